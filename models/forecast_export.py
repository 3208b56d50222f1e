"""`roadsense train forecaster`: train on a whole series, export ONNX and its card.

The card says everything a server needs without torch: input window, horizons,
interval, normalisation, feature layout, weather coding, segment order (the
embedding index), evaluation figures and the data's provenance.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from roadsense.models.card import sha256_file
from roadsense.models.forecaster import ForecasterSettings, GruForecaster, Progress
from roadsense.models.series import Series

OPSET = 17
INPUT_NAMES = ["steps", "segment", "base"]
OUTPUT_NAME = "forecast"


def export_onnx(model: GruForecaster, path: Path) -> None:
    """Write the trained network as ONNX with a dynamic batch."""
    network = model.network
    window = model.settings.window
    features = model.feature_count
    example = (
        torch.zeros(2, window, features),
        torch.zeros(2, dtype=torch.int64),
        torch.zeros(2),
    )
    torch.onnx.export(
        network,
        example,
        str(path),
        input_names=INPUT_NAMES,
        output_names=[OUTPUT_NAME],
        dynamic_axes={name: {0: "batch"} for name in [*INPUT_NAMES, OUTPUT_NAME]},
        opset_version=OPSET,
        dynamo=False,  # the default exporter needs onnxscript (shared/PITFALLS.md #6)
    )


def parity(model: GruForecaster, path: Path, samples: int = 64) -> float:
    """Largest absolute difference between torch and ONNX Runtime on random inputs."""
    rng = np.random.default_rng(0)
    steps = rng.normal(size=(samples, model.settings.window, model.feature_count)).astype(
        np.float32
    )
    segment = rng.integers(0, model.segments, size=samples).astype(np.int64)
    base = rng.normal(size=samples).astype(np.float32)
    with torch.no_grad():
        expected = model.network(
            torch.from_numpy(steps), torch.from_numpy(segment), torch.from_numpy(base)
        ).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run([OUTPUT_NAME], {"steps": steps, "segment": segment, "base": base})
    return float(np.max(np.abs(np.asarray(got) - expected)))


def train_and_export(
    series: Series,
    settings: ForecasterSettings,
    out_dir: Path,
    *,
    interval_min: float,
    version: str,
    provenance: str,
    evaluation: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> Path:
    """Train on the whole series, export, check parity, write the card; return the ONNX path."""
    model = GruForecaster(settings)
    training = model.fit(series, progress)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / "forecaster.onnx"
    export_onnx(model, onnx_path)
    difference = parity(model, onnx_path)
    if difference > 1e-4:
        raise RuntimeError(f"ONNX Runtime differs from torch by {difference:.2e} (> 1e-4)")
    card = {
        "name": "roadsense-gru-forecaster",
        "version": version,
        "onnx_file": onnx_path.name,
        "onnx_sha256": sha256_file(onnx_path),
        "opset": OPSET,
        "inputs": {
            "steps": "batch x window x features, float32",
            "segment": "batch, int64 index into segment_ids",
            "base": "batch, float32 mean of the observed normalised inputs (0 if none)",
        },
        "output": f"{OUTPUT_NAME}: batch x max(horizons), normalised; value = out * std + mean",
        "features": model.spec.names,
        "window": settings.window,
        "horizons": list(settings.horizons),
        "interval_min": interval_min,
        "normalisation": {"mean": model.mean, "std": model.std},
        "weather_codes": model.weather_codes,
        "segment_ids": series.segment_ids,
        "settings": asdict(settings),
        "training": training,
        "onnx_torch_max_abs_difference": difference,
        "evaluation": evaluation or {},
        "data_provenance": provenance,
    }
    (out_dir / "forecaster.card.json").write_text(json.dumps(card, indent=2) + "\n")
    return onnx_path
