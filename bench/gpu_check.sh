#!/usr/bin/env bash
# GPU check of the congestion CNN and the vehicle detector (ONNX Runtime CUDA vs CPU;
# TensorRT fp16 engines: build, cache, parity and throughput), in one go, under 8 minutes.
#
#   bash bench/gpu_check.sh [--model MODEL.onnx] [--seconds 3]
#
# Run from the repository root on an NVIDIA machine. It uses the python3 there
# (PYTHON=... to choose) with numpy, opencv, onnxruntime(-gpu), pydantic and,
# for the TensorRT part, tensorrt and pycuda; what is missing is reported as
# skipped. The package is imported from this checkout (no install needed).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
shim=$(mktemp -d)
trap 'rm -rf "$shim"' EXIT
mkdir "$shim/roadsense"
touch "$shim/roadsense/__init__.py"
for folder in core cli edge cloud proto models provisioning bench; do
    ln -s "$PWD/$folder" "$shim/roadsense/$folder"
done
export PYTHONPATH="$shim${PYTHONPATH:+:$PYTHONPATH}"
timeout 470 "$python" -m roadsense.bench.gpu_check "$@"
