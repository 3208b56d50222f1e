"""Model releases for the registry and rollout tests: ONNX files with a valid card beside
them, either random bytes (the registry never parses them), small real models built with
the ``onnx`` helper API (good, wrong input shape, NaN outputs, much slower), or the shipped
vehicle detector under another version."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from roadsense.models.shipped import DEFAULT_CNN, DEFAULT_DETECTOR

PLACEHOLDER_CARD = DEFAULT_CNN.parent / "congestion-placeholder.card.json"
SIDE = 96
"""Input side of the placeholder CNN the agents run, and of the models built here."""

ModelKind = Literal["good", "wrong_shape", "nan", "slow"]


def write_card(onnx_path: Path, version: str, name: str, **changes: Any) -> None:
    """The placeholder's card, made to describe ``onnx_path`` as ``version``."""
    card = json.loads(PLACEHOLDER_CARD.read_text(encoding="utf-8"))
    card.update(
        name=name,
        version=version,
        placeholder=False,
        onnx_file=onnx_path.name,
        onnx_sha256=hashlib.sha256(onnx_path.read_bytes()).hexdigest(),
        **changes,
    )
    onnx_path.with_suffix(".card.json").write_text(json.dumps(card, indent=1), encoding="utf-8")


def write_release(folder: Path, version: str, size: int = 300_000, name: str = "city") -> Path:
    """``folder/<name>.onnx`` (random bytes: the registry never parses it) and its card."""
    folder.mkdir(parents=True, exist_ok=True)
    onnx_path = folder / f"{name}.onnx"
    onnx_path.write_bytes(os.urandom(size))
    write_card(onnx_path, version, name)
    return onnx_path


def write_detector_release(folder: Path, version: str, **changes: Any) -> Path:
    """``folder/detector.onnx``: the shipped detector, its card made to name ``version``
    (and ``changes``)."""
    folder.mkdir(parents=True, exist_ok=True)
    onnx_path = folder / DEFAULT_DETECTOR.name
    shutil.copyfile(DEFAULT_DETECTOR, onnx_path)
    card = json.loads(DEFAULT_DETECTOR.with_suffix(".card.json").read_text(encoding="utf-8"))
    card.update(
        version=version,
        onnx_file=onnx_path.name,
        onnx_sha256=hashlib.sha256(onnx_path.read_bytes()).hexdigest(),
        **changes,
    )
    onnx_path.with_suffix(".card.json").write_text(json.dumps(card, indent=1), encoding="utf-8")
    return onnx_path


def _const(name: str, value: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value, name))


def _slow_branch(convs: int) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Convolutions on the input whose result is multiplied by 0 and added to the logits:
    the output stays a valid distribution, the time grows with ``convs``."""
    rng = np.random.default_rng(0)
    nodes: list[onnx.NodeProto] = []
    weights: list[onnx.TensorProto] = []
    source, channels = "images", 3
    for i in range(convs):
        weight = (rng.standard_normal((16, channels, 3, 3)) * 0.1).astype(np.float32)
        weights.append(numpy_helper.from_array(weight, f"w{i}"))
        nodes.append(helper.make_node("Conv", [source, f"w{i}"], [f"c{i}"], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"]))
        source, channels = f"r{i}", 16
    nodes.append(helper.make_node("ReduceMean", [source], ["energy4"], axes=[1, 2, 3]))
    nodes.append(helper.make_node("Flatten", ["energy4"], ["energy"]))
    nodes.append(_const("zero", np.zeros((1, 1), np.float32)))
    nodes.append(helper.make_node("Mul", ["energy", "zero"], ["nothing"]))
    return nodes, weights


def build_model(kind: ModelKind, slow_convs: int = 12, pad_bytes: int = 0, seed: int = 1) -> bytes:
    """A 5-class classifier of (N, 3, 96, 96) images (64 x 64 for ``wrong_shape``): mean
    colour → linear → softmax; ``nan`` makes every output NaN, ``slow`` adds convolutions,
    ``pad_bytes`` a weight of that size that adds nothing (a model as large as a real one)."""
    side = 64 if kind == "wrong_shape" else SIDE
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("GlobalAveragePool", ["images"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["colour"]),
        _const("weight", rng.standard_normal((3, 5)).astype(np.float32)),
        _const("bias", rng.standard_normal(5).astype(np.float32)),
        helper.make_node("Gemm", ["colour", "weight", "bias"], ["logits0"]),
    ]
    initializers: list[onnx.TensorProto] = []
    logits = "logits0"
    if pad_bytes:
        padding = rng.standard_normal(pad_bytes // 4).astype(np.float32)
        initializers.append(numpy_helper.from_array(padding, "padding"))
        nodes.append(helper.make_node("ReduceSum", ["padding"], ["pad_sum"], keepdims=1))
        nodes.append(_const("pad_zero", np.zeros(1, np.float32)))
        nodes.append(helper.make_node("Mul", ["pad_sum", "pad_zero"], ["pad_nothing"]))
        nodes.append(helper.make_node("Add", [logits, "pad_nothing"], ["logits_padded"]))
        logits = "logits_padded"
    if kind == "nan":
        nodes.append(_const("nan", np.full((1, 5), np.nan, np.float32)))
        nodes.append(helper.make_node("Mul", [logits, "nan"], ["logits"]))
        logits = "logits"
    elif kind == "slow":
        branch, weights = _slow_branch(slow_convs)
        nodes += branch
        initializers += weights
        nodes.append(helper.make_node("Add", [logits, "nothing"], ["logits"]))
        logits = "logits"
    nodes.append(helper.make_node("Softmax", [logits], ["probabilities"], axis=1))
    graph = helper.make_graph(
        nodes,
        f"congestion-{kind}",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, side, side])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 5])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def write_model(folder: Path, version: str, kind: ModelKind = "good", **build: Any) -> Path:
    """``folder/city.onnx``: a real small model of ``kind`` with a card naming ``version``
    (whose input is always 96 x 96, so a ``wrong_shape`` model contradicts its card)."""
    folder.mkdir(parents=True, exist_ok=True)
    onnx_path = folder / "city.onnx"
    onnx_path.write_bytes(build_model(kind, **build))
    write_card(onnx_path, version, "city", description=f"test model ({kind})")
    return onnx_path
