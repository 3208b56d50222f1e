"""The shipped YOLOX ONNX as a torch module, for fine-tuning, and back.

onnx2torch converts the graph. It imports torchvision for two converters YOLOX never uses,
and torchvision does not import beside this torch (docs/pitfalls.md #7), so an empty
stand-in module is registered first when the real one is missing or broken.
``YoloxLogits`` returns the raw head (objectness and class logits before their sigmoid)
for the loss; ``YoloxExport`` puts the sigmoids back, so the export keeps the original
input/output contract and ``roadsense.models.detection.yolox`` decodes it unchanged.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
import types
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional

from roadsense.models.shipped import DEFAULT_DETECTOR

logger = logging.getLogger(__name__)


def _stand_in_torchvision() -> None:
    """onnx2torch imports torchvision at import time for its NMS and RoIAlign converters,
    which YOLOX does not use; a torchvision built for another torch fails to import (and
    the ``train`` extra does not need it). Register an empty module in its place when
    no working torchvision exists; a converter that needed it would fail loudly."""
    if "torchvision" in sys.modules:
        return
    if importlib.util.find_spec("torchvision") is not None:
        try:
            importlib.import_module("torchvision")
        except Exception:  # a torchvision for another torch raises anything
            logger.info("torchvision does not import; onnx2torch gets a stand-in")
        else:
            return
    stand_in = types.ModuleType("torchvision")
    ops = types.ModuleType("torchvision.ops")

    def unavailable(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("torchvision is not installed (onnx2torch got a stand-in)")

    for name in ("nms", "roi_align", "batched_nms", "box_convert"):
        setattr(ops, name, unavailable)
    stand_in.ops = ops  # type: ignore[attr-defined]
    sys.modules["torchvision"] = stand_in
    sys.modules["torchvision.ops"] = ops


class YoloxLogits(nn.Module):
    """The converted graph, returning ``[B, N, 85]`` logits: raw box, objectness, classes."""

    def __init__(self, levels: nn.Module) -> None:
        super().__init__()
        self.levels = levels

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        maps = self.levels(images)
        return torch.cat([m.flatten(2) for m in maps], dim=2).permute(0, 2, 1)


class YoloxExport(nn.Module):
    """The shipped output contract: objectness and class channels through a sigmoid."""

    def __init__(self, logits: YoloxLogits) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.logits(images)
        return torch.cat([out[..., :4], out[..., 4:].sigmoid()], dim=-1)


def _concat_inputs(node: Any) -> list[Any]:
    return list(node.args[0]) if isinstance(node.args[0], list | tuple) else list(node.args)


def load_yolox(onnx_path: str | Path = DEFAULT_DETECTOR) -> YoloxLogits:
    """The YOLOX ONNX as a torch module returning logits (for the loss).

    In the fx graph each level's ``Concat(box, Sigmoid(obj), Sigmoid(cls))`` loses its two
    sigmoids and becomes an output (the Reshape/Concat tail is replaced by
    ``YoloxLogits``), and ``x * sigmoid(x)`` becomes ``functional.silu`` (a fifth faster on CPU).
    """
    _stand_in_torchvision()
    module = importlib.import_module("onnx2torch").convert(str(onnx_path))
    graph = module.graph
    output = next(n for n in graph.nodes if n.op == "output")
    final = output.args[0]
    while not (final.op == "call_module" and str(final.target).startswith("Concat")):
        final = final.args[0]
    levels = [reshape.args[0] for reshape in _concat_inputs(final)]
    for level in levels:
        parts = [
            p.args[0] if p.op == "call_module" and str(p.target).startswith("Sigmoid") else p
            for p in _concat_inputs(level)
        ]
        level.args = (
            (parts, *level.args[1:]) if isinstance(level.args[0], list | tuple) else tuple(parts)
        )
    output.args = (tuple(levels),)
    for node in list(graph.nodes):
        if node.op == "call_module" and str(node.target).startswith("Mul") and len(node.args) == 2:
            x, gate = node.args
            is_sigmoid = getattr(gate, "op", "") == "call_module" and str(gate.target).startswith(
                "Sigmoid"
            )
            if is_sigmoid and gate.args[0] is x:
                with graph.inserting_before(node):
                    silu = graph.call_function(functional.silu, (x,))
                node.replace_all_uses_with(silu)
                graph.erase_node(node)
    graph.eliminate_dead_code()
    module.recompile()
    module.delete_all_unused_submodules()
    return YoloxLogits(module)


def class_convs(model: YoloxLogits) -> list[nn.Conv2d]:
    """The class-score convolutions of the three heads (80 outputs each)."""
    return [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.out_channels == 80]


def backbone_params(model: YoloxLogits) -> list[nn.Parameter]:
    """Parameters of the modules before the first upsample (the CSPDarknet backbone)."""
    params: list[nn.Parameter] = []
    for node in model.levels.graph.nodes:  # type: ignore[union-attr]
        if node.op != "call_module":
            continue
        if str(node.target).startswith("Resize"):
            break
        params += list(model.levels.get_submodule(str(node.target)).parameters())
    return params
