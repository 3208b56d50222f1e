"""Where the shipped model artifacts live once installed."""

from pathlib import Path

ARTIFACT_DIR = Path(__file__).resolve().parent / "artifacts"
PLACEHOLDER_CNN = ARTIFACT_DIR / "congestion-placeholder.onnx"
"""Untrained placeholder congestion CNN (see its card) until a trained one ships."""

SZ_TAXI_DIR = Path(__file__).resolve().parent / "data" / "sz-taxi"
SZ_SPEEDS = SZ_TAXI_DIR / "sz_speed_subset40.csv"
"""40 Shenzhen roads, 15-min taxi speeds, January 2015 (see the README beside it)."""
SZ_WEATHER = SZ_TAXI_DIR / "sz_weather.csv"

DEFAULT_FORECASTER = ARTIFACT_DIR / "forecaster" / "forecaster.onnx"
"""GRU forecaster trained on the shipped SZ-taxi subset (card beside it)."""

SAMPLE_CLIP = Path(__file__).resolve().parent.parent / "edge" / "samples" / "highway_video03.avi"
"""Real highway clip (provenance in edge/samples/README.md): demo, benchmarks, tests."""
