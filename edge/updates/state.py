"""Which model is in force on the device, kept so that a SIGKILL at any step restarts on a
complete one.

``<models folder>/state.json`` names the current and the previous model (version, ONNX
path, sha256) and the update being applied, if any. It is replaced whole (temporary file,
fsync, rename, fsync of the folder), and names only releases the downloader installed
whole before (``<folder>/<version>/``, moved there in one rename). At start the agent
loads the current model when its bytes are complete (their sha256 is the recorded one),
else the previous, else the configured model.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from google.protobuf.message import DecodeError

from roadsense.core.files import replace_file
from roadsense.models.card import card_path_for, sha256_file
from roadsense.models.signing import is_model_version
from roadsense.proto.v1 import telemetry_pb2

logger = logging.getLogger(__name__)

STATE_FILE = "state.json"


@dataclass(frozen=True)
class HeldModel:
    """A complete model on the device: where its ONNX is and what its bytes hash to."""

    version: str
    onnx: Path
    sha256: str

    def is_complete(self) -> bool:
        """The ONNX and its card are there and the bytes are the recorded ones."""
        try:
            return card_path_for(self.onnx).is_file() and sha256_file(self.onnx) == self.sha256
        except OSError:
            return False

    def as_json(self) -> dict[str, str]:
        """The state file's record of this model."""
        return {"version": self.version, "onnx": str(self.onnx), "sha256": self.sha256}

    @classmethod
    def from_json(cls, data: Any) -> HeldModel | None:
        """A record of the state file; None for null or a record that is not one."""
        if not isinstance(data, dict):
            return None
        version, onnx, sha256 = data.get("version"), data.get("onnx"), data.get("sha256")
        if not all(isinstance(v, str) and v for v in (version, onnx, sha256)):
            return None
        return cls(str(version), Path(str(onnx)), str(sha256))


@dataclass(frozen=True)
class ModelState:
    """What ``state.json`` records."""

    current: HeldModel | None = None
    """The model in force; None: the configured one."""
    previous: HeldModel | None = None
    """The model in force before the last swap, kept for rollback."""
    pending: bytes = b""
    """The ModelUpdate being applied (serialised); resumed at the next start."""

    def with_changes(self, **changes: Any) -> ModelState:
        """A copy with some fields replaced."""
        return replace(self, **changes)


def load_state(folder: Path) -> ModelState:
    """The recorded state; an empty one when there is none or it cannot be read."""
    path = folder / STATE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        pending = base64.b64decode(data.get("pending") or "", validate=True)
    except FileNotFoundError:
        return ModelState()
    except (OSError, ValueError, AttributeError, binascii.Error) as err:
        # Never half-written (it is replaced whole), so this is damage from outside.
        logger.warning("%s cannot be read (%s); starting on the configured model", path, err)
        return ModelState()
    return ModelState(
        HeldModel.from_json(data.get("current")),
        HeldModel.from_json(data.get("previous")),
        pending,
    )


def save_state(folder: Path, state: ModelState) -> None:
    """Record ``state`` whole: a crash leaves the old record or the new one."""
    document = {
        "current": state.current.as_json() if state.current else None,
        "previous": state.previous.as_json() if state.previous else None,
        "pending": base64.b64encode(state.pending).decode("ascii"),
    }
    replace_file(folder / STATE_FILE, (json.dumps(document, indent=1) + "\n").encode())


def remove_leftovers(folder: Path) -> None:
    """Remove temporary state files a process killed mid-write left (never read)."""
    for leftover in folder.glob(f".{STATE_FILE}.*"):
        leftover.unlink(missing_ok=True)


def startup_model(folder: Path, configured: Path) -> Path:
    """The ONNX to start on: the current model when complete, else the previous, else
    the configured one (each fallback logged with its reason)."""
    state = load_state(folder)
    for role, model in (("current", state.current), ("previous", state.previous)):
        if model is None:
            continue
        if model.is_complete():
            return model.onnx
        logger.warning(
            "the %s model %s (%s) is missing or damaged; not starting on it",
            role,
            model.version,
            model.onnx,
        )
    return configured


def held_release(
    folder: Path, version: str, sha256: str, known: list[HeldModel]
) -> HeldModel | None:
    """A complete copy of ``version`` with these bytes already on the device: an installed
    release in ``folder`` or one of the ``known`` models (current, previous, configured)."""
    candidates = [m for m in known if m.version == version and m.sha256 == sha256]
    release = folder / version
    if is_model_version(version) and release.is_dir():
        for onnx in sorted(release.glob("*.onnx")):
            candidates.append(HeldModel(version, onnx, sha256))
    return next((m for m in candidates if m.is_complete()), None)


def _is_release(folder: Path) -> bool:
    """An installed release: a folder named by a version holding a card of that version."""
    if not (folder.is_dir() and is_model_version(folder.name)):
        return False
    for card in folder.glob("*.card.json"):
        try:
            if json.loads(card.read_text(encoding="utf-8")).get("version") == folder.name:
                return True
        except (OSError, ValueError, AttributeError):
            continue
    return False


def prune_releases(folder: Path, keep: set[str]) -> list[str]:
    """Remove installed releases other than ``keep`` (nothing else); the versions removed."""
    removed = []
    for release in sorted(folder.iterdir()) if folder.is_dir() else []:
        if release.name not in keep and _is_release(release):
            shutil.rmtree(release, ignore_errors=True)
            removed.append(release.name)
    return removed


def discard_release(folder: Path, version: str) -> bool:
    """Remove the installed release ``version`` (one that failed its checks); whether it was
    there."""
    release = folder / version
    if not _is_release(release):
        return False
    shutil.rmtree(release, ignore_errors=True)
    return True


def describe(folder: Path, configured: Path) -> dict[str, Any]:
    """What a device holds, for people and scripts: the model it starts on, current and
    previous (with whether their bytes check out), the update pending, partial downloads."""
    state = load_state(folder)

    def model(held: HeldModel | None) -> dict[str, Any] | None:
        if held is None:
            return None
        return {**held.as_json(), "complete": held.is_complete()}

    pending = None
    if state.pending:
        try:
            update = telemetry_pb2.ModelUpdate.FromString(state.pending)
            pending = {
                "request_id": update.request_id,
                "version": update.version,
                "rollout_id": update.rollout_id,
                "size": update.size,
            }
        except DecodeError:
            pending = {"request_id": "", "version": "", "rollout_id": "", "size": 0}
    partials = {
        p.name.removesuffix(".onnx.partial"): p.stat().st_size
        for p in (sorted(folder.glob("*.onnx.partial")) if folder.is_dir() else [])
    }
    return {
        "folder": str(folder),
        "start_model": str(startup_model(folder, configured)),
        "current": model(state.current),
        "previous": model(state.previous),
        "pending": pending,
        "partial_downloads": partials,
    }
