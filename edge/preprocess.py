"""Frames → model input tensor, exactly as the model card says (``models/preprocess.py``,
which the cloud's image classifier shares)."""

from __future__ import annotations

from roadsense.models.preprocess import Frame, frames_to_tensor

__all__ = ["Frame", "frames_to_tensor"]
