"""The forecaster at serving time, without torch: series, features, per-segment profile
and the ONNX runtime (``runtime`` first)."""
