"""TensorRT engine cache: an engine is only ever loaded on the exact setup it was built for.

An engine is tied to the ONNX it was parsed from, the TensorRT version that
built it, the GPU (name and compute capability), the precision and the batch
range of its optimisation profile. ``EngineKey`` holds all six; the cache
stores each engine under a file name derived from the key's digest, with a
JSON sidecar holding the key itself, so a lookup checks the whole key, not
just a name, and an engine from an older TensorRT or another GPU is never
handed to the runtime (the runtime would refuse it at best and crash at worst).

No TensorRT here: this module is plain Python, so its logic is tested
everywhere and the edge can decide "build or load" before touching the GPU.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from roadsense.core.files import replace_file

logger = logging.getLogger(__name__)

Precision = Literal["fp32", "fp16", "int8"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on."""

    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: Precision
    min_batch: int
    max_batch: int

    def digest(self) -> str:
        """Short stable hash of the whole key."""
        canonical = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(canonical).hexdigest()[:16]

    def file_name(self, model_name: str) -> str:
        """Readable and unique: model, precision, batch range and the key digest."""
        return (
            f"{model_name}-{self.precision}-b{self.min_batch}-{self.max_batch}-"
            f"sm{self.compute_capability.replace('.', '')}-{self.digest()}.engine"
        )

    def differences(self, other: EngineKey) -> list[str]:
        """Fields that differ, as 'name: mine != theirs'."""
        mine, theirs = asdict(self), asdict(other)
        return [f"{k}: {theirs[k]} != {mine[k]}" for k in mine if mine[k] != theirs[k]]


def _sidecar(engine: Path) -> Path:
    return engine.with_name(engine.name + ".json")


class EngineCache:
    """A folder of engines, each with the key it was built for."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, key: EngineKey, model_name: str) -> Path:
        """Where the engine for ``key`` lives (whether or not it exists yet)."""
        return self.root / key.file_name(model_name)

    def lookup(self, key: EngineKey, model_name: str) -> Path | None:
        """The cached engine built for exactly ``key``, or None."""
        path = self.path_for(key, model_name)
        if not path.is_file():
            return None
        try:
            stored = EngineKey(**json.loads(_sidecar(path).read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError) as err:
            logger.warning("engine %s has no readable key (%s): not used", path.name, err)
            return None
        if stored != key:
            logger.warning(
                "engine %s was built for another setup (%s): not used",
                path.name,
                "; ".join(key.differences(stored)),
            )
            return None
        return path

    def stale_engines(self, key: EngineKey, model_name: str) -> list[tuple[Path, list[str]]]:
        """Engines of this model built for another setup, with how they differ."""
        found = []
        for sidecar in sorted(self.root.glob(f"{model_name}-*.engine.json")):
            try:
                stored = EngineKey(**json.loads(sidecar.read_text(encoding="utf-8")))
            except (OSError, ValueError, TypeError):
                continue
            if stored != key:
                found.append((sidecar.with_suffix(""), key.differences(stored)))
        return found

    def store(self, key: EngineKey, model_name: str, engine: bytes) -> Path:
        """Write an engine and its key atomically (a crash never leaves half an engine)."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.path_for(key, model_name)
        for target, data in (
            (path, engine),
            (_sidecar(path), json.dumps(asdict(key), indent=2).encode()),
        ):
            replace_file(target, data)
        return path
