"""Variants of the shipped placeholder CNN for rollouts to real agents: good and bad ones."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
from onnx import helper, numpy_helper

from roadsense.models.shipped import PLACEHOLDER_CNN

Variant = Literal["good", "wrong-shape", "nan", "slow"]
SLOW_MATMULS = 6
"""Square 384x384 products per call: tens of milliseconds against the placeholder's few,
far past the agent's self-test latency factor."""


def _slow(graph: onnx.GraphProto) -> None:
    """Make the model burn time without changing its answer (0 x work added to the output)."""
    size = 384
    weight = numpy_helper.from_array(np.full((size, size), 1e-3, np.float32), "slow_w")
    zero = numpy_helper.from_array(np.zeros((1,), np.float32), "slow_zero")
    graph.initializer.extend([weight, zero])
    # Scaled by the input, so ONNX Runtime cannot fold the products into a constant.
    graph.node.append(
        helper.make_node("ReduceMean", [graph.input[0].name], ["slow_scale"], keepdims=0)
    )
    graph.node.append(helper.make_node("Mul", ["slow_w", "slow_scale"], ["slow_start"]))
    previous = "slow_start"
    for i in range(SLOW_MATMULS):
        graph.node.append(helper.make_node("MatMul", [previous, "slow_w"], [f"slow_{i}"]))
        previous = f"slow_{i}"
    graph.node.append(helper.make_node("ReduceSum", [previous], ["slow_sum"], keepdims=0))
    graph.node.append(helper.make_node("Mul", ["slow_sum", "slow_zero"], ["slow_nothing"]))
    _rewire_output(graph, "Add", "slow_nothing")


def _nan(graph: onnx.GraphProto) -> None:
    nan = numpy_helper.from_array(np.array([np.nan], np.float32), "nan_value")
    graph.initializer.append(nan)
    _rewire_output(graph, "Mul", "nan_value")


def _rewire_output(graph: onnx.GraphProto, op: str, operand: str) -> None:
    """The graph's output becomes ``op(old output, operand)`` under the same name."""
    output = graph.output[0].name
    for node in graph.node:
        node.output[:] = [f"{output}_raw" if o == output else o for o in node.output]
        if node.op_type != op or operand not in node.input:
            node.input[:] = [f"{output}_raw" if i == output else i for i in node.input]
    graph.node.append(helper.make_node(op, [f"{output}_raw", operand], [output]))


def write_variant(folder: Path, version: str, variant: Variant) -> Path:
    """``folder/congestion.onnx`` (a variant of the placeholder) with its card as ``version``."""
    model = onnx.load(PLACEHOLDER_CNN)
    if variant == "wrong-shape":
        dims = model.graph.input[0].type.tensor_type.shape.dim
        dims[2].dim_value, dims[3].dim_value = 64, 64
    elif variant == "nan":
        _nan(model.graph)
    elif variant == "slow":
        _slow(model.graph)
    model.doc_string = f"{variant} variant {version}"  # distinct bytes per release
    if variant != "wrong-shape":
        onnx.checker.check_model(model)
    folder.mkdir(parents=True, exist_ok=True)
    onnx_path = folder / "congestion.onnx"
    onnx_path.write_bytes(model.SerializeToString())
    card = json.loads(PLACEHOLDER_CNN.with_suffix(".card.json").read_text(encoding="utf-8"))
    card.update(
        version=version,
        onnx_file=onnx_path.name,
        onnx_sha256=hashlib.sha256(onnx_path.read_bytes()).hexdigest(),
    )
    onnx_path.with_suffix(".card.json").write_text(json.dumps(card, indent=1), encoding="utf-8")
    return onnx_path
