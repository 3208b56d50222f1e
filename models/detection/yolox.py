"""YOLOX pre- and post-processing: the contract of the shipped vehicle detector.

The network (YOLOX-Nano, Apache-2.0, Megvii) is a COCO export; everything around it
must match its training recipe or the boxes come out wrong:

- input: BGR, 0-255, not normalised; resized keeping the aspect ratio and padded with
  114 at the right and bottom (``letterbox``);
- output rows: ``[x, y, log w, log h, objectness, 80 class scores]`` for each anchor
  point of the strides 8, 16 and 32; ``xy = (xy + grid) * stride``,
  ``wh = exp(wh) * stride`` (``decode``).

Only vehicle classes come out (COCO 2 car, 3 motorcycle, 5 bus, 7 truck): a box's score
is its objectness times its best *vehicle* class score, so a person, a bicycle or any
other class can never be reported, not even as a label. NMS is class-agnostic: for
counting, one van read as car and truck must count once. The edge, the cloud's
``MeasureImage`` and the evaluation share this module, so all three see the same boxes.
"""

from __future__ import annotations

from collections.abc import Mapping

import cv2
import numpy as np
import numpy.typing as npt
import supervision as sv

from roadsense.models.preprocess import Frame

VEHICLE_CLASSES: Mapping[int, str] = {2: "car", 3: "motorcycle", 5: "bus", 7: "truck"}
"""COCO class id → the vehicle class name a report carries."""
STRIDES = (8, 16, 32)
PAD_VALUE = 114


def letterbox(frame: Frame, height: int, width: int) -> tuple[npt.NDArray[np.float32], float]:
    """The network input (3 x height x width, BGR 0-255) and the scale applied to the
    frame (a network pixel is 1/scale frame pixels)."""
    if height % 32 or width % 32:
        raise ValueError(f"input size {height}x{width}: both must be multiples of 32")
    frame_h, frame_w = frame.shape[:2]
    scale = min(height / frame_h, width / frame_w)
    new_h, new_w = round(frame_h * scale), round(frame_w * scale)
    canvas = np.full((height, width, 3), PAD_VALUE, dtype=np.uint8)
    canvas[:new_h, :new_w] = cv2.resize(frame, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(canvas.transpose(2, 0, 1), dtype=np.float32), scale


def _grid(height: int, width: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Anchor points (x, y) and their stride, in the network's output order."""
    points, strides = [], []
    for stride in STRIDES:
        gy, gx = np.meshgrid(np.arange(height // stride), np.arange(width // stride), indexing="ij")
        points.append(np.stack((gx, gy), axis=-1).reshape(-1, 2))
        strides.append(np.full((points[-1].shape[0], 1), stride))
    return np.concatenate(points).astype(np.float32), np.concatenate(strides).astype(np.float32)


def empty_detections() -> sv.Detections:
    """No vehicles (with the class_name column every detection set carries)."""
    empty = sv.Detections.empty()
    empty.data["class_name"] = np.array([], dtype=object)
    return empty


def decode(
    output: npt.NDArray[np.float32],
    input_size: tuple[int, int],
    scale: float,
    frame_shape: tuple[int, int],
    *,
    score_threshold: float,
    nms_iou: float,
) -> sv.Detections:
    """One frame's raw output (anchors x 85) at ``input_size`` (height, width) → vehicles in
    frame pixels, clipped to the frame."""
    height, width = input_size
    points, stride = _grid(height, width)
    if output.shape != (points.shape[0], 85):
        raise ValueError(
            f"detector output {output.shape}, expected ({points.shape[0]}, 85) for {height}x{width}"
        )
    ids = np.array(sorted(VEHICLE_CLASSES), dtype=np.int64)
    vehicle_scores = output[:, 5 + ids] * output[:, 4:5]
    best = vehicle_scores.argmax(axis=1)
    score = vehicle_scores[np.arange(len(best)), best]
    keep = score >= score_threshold
    if not keep.any():
        return empty_detections()
    rows, score, class_ids = output[keep], score[keep], ids[best[keep]]
    centre = (rows[:, :2] + points[keep]) * stride[keep]
    size = np.exp(rows[:, 2:4]) * stride[keep]
    xyxy = np.concatenate((centre - size / 2, centre + size / 2), axis=1) / scale
    frame_h, frame_w = frame_shape
    xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, frame_w)
    xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, frame_h)
    xywh = np.concatenate((xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]), axis=1)
    kept = np.asarray(
        cv2.dnn.NMSBoxes(xywh.tolist(), score.tolist(), score_threshold, nms_iou), dtype=np.int64
    ).reshape(-1)
    names = np.array([VEHICLE_CLASSES[int(c)] for c in class_ids[kept]], dtype=object)
    return sv.Detections(
        xyxy=xyxy[kept].astype(np.float32),
        confidence=score[kept].astype(np.float32),
        class_id=class_ids[kept].astype(int),
        data={"class_name": names},
    )
