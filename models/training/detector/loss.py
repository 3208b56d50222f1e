"""The YOLOX fine-tuning loss: a simplified SimOTA assignment and its three terms.

Why our own and not YOLOX's: the network arrives as a converted ONNX graph, not as the
YOLOX repository's modules, and the data has one label (``Vehicle``) while the head
keeps its 80 COCO classes. So the loss trains only the vehicle columns, leaves people
and traffic lights alone, and lets the model keep its own opinion of which vehicle
class a box is (a bus stays a bus).

- Assignment (per image): a truth box's candidates are anchor points whose cell centre
  lies within ``center_radius`` strides of the box centre, on every stride. Each box
  takes its ``k = max(1, floor(sum of its top-10 IoUs))`` cheapest candidates, cost =
  ``-log sqrt(obj * vehicle) + 3 * -log IoU`` plus a penalty outside the box; a point
  claimed twice goes to the cheaper box. The IoU in the cost makes the stride whose
  predictions fit the box size win.
- Terms: objectness BCE on every point; ``1 - GIoU`` on positives; BCE on positives'
  chosen vehicle column with the prediction's IoU as target (YOLOX's IoU-aware target).
- Points the model confidently calls a non-vehicle object get no objectness loss (the
  vehicle-only labels say nothing about people) and their vehicle columns go to 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.nn import functional

VEHICLE_IDS: tuple[int, ...] = (2, 3, 5, 7)
"""COCO car, motorcycle, bus, truck (``roadsense.models.detection.yolox.VEHICLE_CLASSES``)."""
STRIDES: tuple[int, ...] = (8, 16, 32)
NO_OPINION_LOGIT = -4.0
"""Below this on every vehicle column a positive is trained as a car."""


@dataclass(frozen=True)
class LossConfig:
    """Weights and assignment settings of :func:`yolox_loss`."""

    center_radius: float = 2.5
    topk_iou: int = 10
    w_box: float = 5.0
    w_obj: float = 1.0
    w_cls: float = 1.0
    other_object_score: float = 0.3
    vehicle_ids: tuple[int, ...] = VEHICLE_IDS


def anchor_grid(height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Anchor points ``(N, 2)`` (x, y cell index) and their strides ``(N,)``, in the
    network's output order (as ``roadsense.models.detection.yolox``)."""
    points, strides = [], []
    for stride in STRIDES:
        gy, gx = torch.meshgrid(
            torch.arange(height // stride), torch.arange(width // stride), indexing="ij"
        )
        points.append(torch.stack((gx, gy), 2).reshape(-1, 2))
        strides.append(torch.full((points[-1].shape[0],), float(stride)))
    return torch.cat(points).float(), torch.cat(strides)


def decode_boxes(raw: torch.Tensor, points: torch.Tensor, strides: torch.Tensor) -> torch.Tensor:
    """Raw box channels ``[..., N, 4]`` → xyxy in network pixels."""
    s = strides.unsqueeze(-1)
    centre = (raw[..., :2] + points) * s
    size = torch.exp(raw[..., 2:4].clamp(max=10.0)) * s
    return torch.cat([centre - size / 2, centre + size / 2], dim=-1)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU ``(M, 4) x (K, 4) → (M, K)`` of xyxy boxes."""
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(-1)
    return inter / (area_a[:, None] + area_b[None] - inter + 1e-9)


def giou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Element-wise generalised IoU of two ``(K, 4)`` xyxy box sets."""
    lt = torch.max(a[:, :2], b[:, :2])
    rb = torch.min(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(-1)
    union = area_a + area_b - inter + 1e-9
    hull = (torch.max(a[:, 2:], b[:, 2:]) - torch.min(a[:, :2], b[:, :2])).clamp(min=0)
    enclosing = hull.prod(-1) + 1e-9
    return inter / union - (enclosing - union) / enclosing


def assign(
    boxes: torch.Tensor,
    obj_logit: torch.Tensor,
    vehicle_logit: torch.Tensor,
    truth: torch.Tensor,
    *,
    points: torch.Tensor,
    strides: torch.Tensor,
    cfg: LossConfig,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Simplified SimOTA for one image (inputs detached): positive point indices, the
    truth box each is assigned to, and the IoU of its prediction with that box."""
    empty = torch.zeros(0, dtype=torch.long)
    centres = (points + 0.5) * strides[:, None]
    truth_centre = (truth[:, :2] + truth[:, 2:]) / 2
    radius = cfg.center_radius * strides[None, :]
    near = ((centres[None, :, 0] - truth_centre[:, None, 0]).abs() < radius) & (
        (centres[None, :, 1] - truth_centre[:, None, 1]).abs() < radius
    )
    inside = (
        (centres[None, :, 0] > truth[:, None, 0])
        & (centres[None, :, 0] < truth[:, None, 2])
        & (centres[None, :, 1] > truth[:, None, 1])
        & (centres[None, :, 1] < truth[:, None, 3])
    )
    candidates = near.any(0).nonzero().squeeze(1)
    if candidates.numel() == 0:
        return empty, empty, torch.zeros(0)
    ious = box_iou(truth, boxes[candidates])
    score = (obj_logit[candidates].sigmoid() * vehicle_logit[candidates].sigmoid()).sqrt()
    cost = -torch.log(score.clamp(1e-6, 1 - 1e-6))[None, :] - 3.0 * torch.log(ious + 1e-8)
    cost = cost + 1e5 * (~near[:, candidates]) + 10.0 * (~inside[:, candidates])
    top = min(cfg.topk_iou, candidates.numel())
    dynamic_k = ious.topk(top, dim=1).values.sum(1).floor().clamp(min=1).long()
    match = torch.zeros_like(cost, dtype=torch.bool)
    for g in range(truth.shape[0]):
        match[g, cost[g].topk(int(dynamic_k[g]), largest=False).indices] = True
    match &= near[:, candidates]
    shared = match.sum(0) > 1
    if shared.any():
        cheapest = cost[:, shared].argmin(0)
        match[:, shared] = False
        match[cheapest, shared.nonzero().squeeze(1)] = True
    positive = match.any(0)
    truth_index = match[:, positive].float().argmax(0)
    positive_iou = ious[:, positive].gather(0, truth_index[None]).squeeze(0)
    return candidates[positive], truth_index, positive_iou


def yolox_loss(
    out: torch.Tensor,
    targets: Sequence[torch.Tensor],
    points: torch.Tensor,
    strides: torch.Tensor,
    cfg: LossConfig | None = None,
) -> dict[str, torch.Tensor]:
    """The loss of logits ``out [B, N, 85]`` against each image's xyxy truth boxes: the
    weighted sum (``loss``) and its terms, each divided by the number of positives."""
    cfg = cfg or LossConfig()
    batch, n_points, _ = out.shape
    vehicle = torch.tensor(cfg.vehicle_ids)
    other_ids = torch.tensor([c for c in range(80) if c not in cfg.vehicle_ids])
    boxes = decode_boxes(out[..., :4], points, strides)
    obj, cls = out[..., 4], out[..., 5:]
    obj_target = torch.zeros(batch, n_points)
    obj_weight = torch.ones(batch, n_points)
    box_loss, cls_loss = out.new_zeros(()), out.new_zeros(())
    n_positive = 0
    with torch.no_grad():
        prob = obj.sigmoid()[..., None] * cls.sigmoid()
        other = (prob[..., other_ids].max(-1).values > cfg.other_object_score) & ~torch.isin(
            prob.argmax(-1), vehicle
        )
    for b in range(batch):
        positive = torch.zeros(0, dtype=torch.long)
        if targets[b].numel():
            with torch.no_grad():
                positive, truth_index, positive_iou = assign(
                    boxes[b].detach(),
                    obj[b].detach(),
                    cls[b][:, vehicle].detach().max(-1).values,
                    targets[b],
                    points=points,
                    strides=strides,
                    cfg=cfg,
                )
        other_here = other[b].clone()
        if positive.numel():
            n_positive += positive.numel()
            obj_target[b, positive] = 1.0
            other_here[positive] = False
            box_loss = box_loss + (1.0 - giou(boxes[b, positive], targets[b][truth_index])).sum()
            logits = cls[b, positive][:, vehicle]
            column = logits.detach().argmax(-1)
            column = torch.where(
                logits.detach().max(-1).values < NO_OPINION_LOGIT, torch.zeros_like(column), column
            )
            picked = logits.gather(1, column[:, None]).squeeze(1)
            cls_loss = cls_loss + functional.binary_cross_entropy_with_logits(
                picked, positive_iou.clamp(min=0.0), reduction="sum"
            )
        if other_here.any():
            obj_weight[b, other_here] = 0.0
            cls_loss = cls_loss + functional.binary_cross_entropy_with_logits(
                cls[b, other_here][:, vehicle],
                torch.zeros(int(other_here.sum()), len(cfg.vehicle_ids)),
                reduction="sum",
            )
    obj_loss = (
        functional.binary_cross_entropy_with_logits(obj, obj_target, reduction="none") * obj_weight
    ).sum()
    norm = max(n_positive, 1)
    total = (cfg.w_box * box_loss + cfg.w_obj * obj_loss + cfg.w_cls * cls_loss) / norm
    return {
        "loss": total,
        "box": box_loss / norm,
        "obj": obj_loss / norm,
        "cls": cls_loss / norm,
        "n_positive": torch.tensor(float(n_positive)),
    }
