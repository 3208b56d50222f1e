"""Model releases for the registry tests: an ONNX-named file with a valid card beside it."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from roadsense.models.shipped import DEFAULT_CNN

PLACEHOLDER_CARD = DEFAULT_CNN.parent / "congestion-placeholder.card.json"


def write_release(folder: Path, version: str, size: int = 300_000, name: str = "city") -> Path:
    """``folder/<name>.onnx`` (random bytes: the registry never parses it) and its card."""
    folder.mkdir(parents=True, exist_ok=True)
    onnx = folder / f"{name}.onnx"
    onnx.write_bytes(os.urandom(size))
    card = json.loads(PLACEHOLDER_CARD.read_text(encoding="utf-8"))
    card.update(
        name=name,
        version=version,
        onnx_file=onnx.name,
        onnx_sha256=hashlib.sha256(onnx.read_bytes()).hexdigest(),
    )
    onnx.with_suffix(".card.json").write_text(json.dumps(card, indent=1), encoding="utf-8")
    return onnx
