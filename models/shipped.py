"""Where the shipped model artifacts live once installed."""

from pathlib import Path

ARTIFACT_DIR = Path(__file__).resolve().parent / "artifacts"
PLACEHOLDER_CNN = ARTIFACT_DIR / "congestion-placeholder.onnx"
"""Untrained placeholder congestion CNN (see its card) until a trained one ships."""
