"""Model releases for the registry tests: an ONNX-named file with a valid card beside it."""

from __future__ import annotations

from roadsense.bench.sim_fleet import PLACEHOLDER_CARD, write_release

__all__ = ["PLACEHOLDER_CARD", "write_release"]
