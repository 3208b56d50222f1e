"""Export-time helper: turn the shipped fixed-shape YOLOX ONNX into a dynamic-shape one.

Why a separate module: the ``onnx`` package is only needed here, at export time on a
workstation. The edge runtime (``edge.measure.yolox``) imports only onnxruntime and
loads the bytes this produces, so ``onnx`` never has to be installed on a camera box.

What is changed (see detectors/PROVENANCE.md): the input's batch, height and width and
the output's batch and anchor dimensions become symbolic, the stored ``value_info``
(shape annotations for the fixed size) is dropped, and the three head ``Reshape``
targets ``[1, 85, -1]`` get their hard-coded batch 1 replaced by ``0`` ("copy the input
dimension", opset-11 semantics), which is what makes batch N > 1 run. Without the last
change the graph runs at any multiple of 32 but only at batch 1.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

logger = logging.getLogger(__name__)


def make_dynamic(model_path: str | Path) -> bytes:
    """Return the serialised dynamic-shape model (batch, H, W and anchors symbolic).

    The result runs at any input H, W that are multiples of 32 (the largest stride)
    and any batch size; output is ``[N, A, 85]`` with A = sum over strides 8/16/32 of
    (H/s)*(W/s).
    """
    model = onnx.load(str(model_path))
    graph = model.graph
    in_dims = graph.input[0].type.tensor_type.shape.dim
    for i, name in ((0, "batch"), (2, "height"), (3, "width")):
        in_dims[i].ClearField("dim_value")
        in_dims[i].dim_param = name
    out_dims = graph.output[0].type.tensor_type.shape.dim
    for i, name in ((0, "batch"), (1, "anchors")):
        out_dims[i].ClearField("dim_value")
        out_dims[i].dim_param = name
    del graph.value_info[:]

    reshape_shapes = {n.input[1] for n in graph.node if n.op_type == "Reshape"}
    patched = 0
    for idx, init in enumerate(graph.initializer):
        if init.name not in reshape_shapes:
            continue
        shape = numpy_helper.to_array(init).copy()
        if shape.ndim == 1 and shape.size >= 1 and shape[0] == 1:
            shape[0] = 0  # copy the batch dimension from the input tensor
            graph.initializer[idx].CopyFrom(
                numpy_helper.from_array(shape.astype(np.int64), init.name)
            )
            patched += 1
    logger.info("made %s dynamic; patched %d reshape batch dims", model_path, patched)
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


if __name__ == "__main__":  # pragma: no cover - manual export entry point
    import sys

    logging.basicConfig(level=logging.INFO)
    Path(sys.argv[2]).write_bytes(make_dynamic(sys.argv[1]))
