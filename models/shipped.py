"""Where the shipped model artifacts live once installed."""

from pathlib import Path

ARTIFACT_DIR = Path(__file__).resolve().parent / "artifacts"
DEFAULT_CNN = ARTIFACT_DIR / "congestion.onnx"
"""The congestion CNN the edge runs by default (EfficientNet-Lite0, frozen, and a linear head
trained on 21 hand-labelled cameras; its card says how, on what, and how well held out)."""
DEFAULT_DETECTOR = ARTIFACT_DIR / "detector.onnx"
"""The vehicle detector the edge measures with (YOLOX-Nano; card beside it: input size,
classes, score threshold and how it was evaluated)."""
PLACEHOLDER_CNN = ARTIFACT_DIR / "congestion-placeholder.onnx"
"""Untrained hand-set CNN (96x96, card says placeholder): a tiny fast model for tests."""

SZ_TAXI_DIR = Path(__file__).resolve().parent / "data" / "sz-taxi"
SZ_SPEEDS = SZ_TAXI_DIR / "sz_speed_subset40.csv"
"""40 Shenzhen roads, 15-min taxi speeds, January 2015 (see the README beside it)."""
SZ_WEATHER = SZ_TAXI_DIR / "sz_weather.csv"
SZ_ADJACENCY = SZ_TAXI_DIR / "sz_adj_subset40.csv"
"""Adjacency of the 40 roads of SZ_SPEEDS, in their column order (no header)."""

DEFAULT_FORECASTER = ARTIFACT_DIR / "forecaster" / "forecaster.onnx"
"""GRU forecaster trained on the shipped SZ-taxi subset (card beside it)."""

SAMPLE_CLIP = Path(__file__).resolve().parent.parent / "edge" / "samples" / "highway_video03.avi"
"""Real highway clip (provenance in edge/samples/README.md): demo, benchmarks, tests."""
