"""Camera stills on request, with the camera's privacy regions pixelated first.

Frames never leave a device unless ``[privacy] allow_snapshots`` is on. A snapshot is the
camera's newest frame, every configured blur region pixelated into coarse blocks (unlike a
Gaussian blur, pixelation cannot be sharpened back), scaled down to the width limit and
JPEG-encoded. The operator uses it to aim a camera and draw its region of interest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from roadsense.core.errors import CommandError
from roadsense.core.roi import Roi, crop_roi
from roadsense.edge.commands.remote import decode_command
from roadsense.models.preprocess import Frame
from roadsense.proto.v1 import telemetry_pb2

PIXEL_BLOCKS = 12
"""A blurred region keeps at most this many blocks along its longer side."""


def pixelate(frame: Frame, regions: Sequence[Roi]) -> Frame:
    """A copy of ``frame`` with each region replaced by coarse blocks of its mean colour."""
    out = frame.copy()
    for region in regions:
        area = crop_roi(out, region)  # a view into ``out``
        height, width = area.shape[:2]
        scale = PIXEL_BLOCKS / max(height, width)
        small = cv2.resize(
            area,
            (max(1, round(width * scale)), max(1, round(height * scale))),
            interpolation=cv2.INTER_AREA,
        )
        area[:] = cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST)
    return out


@dataclass(frozen=True)
class SnapshotRequest:
    """A decoded snapshot command."""

    request_id: str
    camera_id: str
    max_width: int | None


def parse_snapshot_command(payload: bytes) -> SnapshotRequest:
    """Decode a SnapshotCommand; CommandError naming what is wrong."""
    command = decode_command(telemetry_pb2.SnapshotCommand, payload)
    if not command.camera_id:
        raise CommandError("camera_id is missing")
    max_width = command.max_width if command.HasField("max_width") else None
    if max_width is not None and max_width < 16:
        raise CommandError(f"max_width {max_width} is too small (at least 16 pixels)")
    return SnapshotRequest(command.request_id, command.camera_id, max_width)


def encode_snapshot(
    frame: Frame, blur: Sequence[Roi], max_width: int, jpeg_quality: int
) -> tuple[bytes, int, int]:
    """JPEG of the pixelated frame, no wider than ``max_width``: (bytes, width, height)."""
    image = pixelate(frame, blur)
    height, width = image.shape[:2]
    if width > max_width:
        height = max(1, round(height * max_width / width))
        width = max_width
    scaled = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", scaled, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    if not ok:
        raise CommandError("the frame could not be encoded as JPEG")
    return np.asarray(encoded).tobytes(), width, height
