"""`roadsense train forecaster`: train on a whole series, export ONNX and its card.

The card says everything a server needs without torch: input window, horizons,
interval, normalisation, feature layout, weather coding, time-of-day slots,
segment order (the embedding index), both outputs, evaluation figures and the
data's provenance. A server builds the feed with
``roadsense.models.forecast.features.window_inputs(...).feed()`` from values, observed flags,
times, weather and this card.
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
from roadsense.models.forecast.series import Series
from roadsense.models.training.forecast.forecaster import (
    ForecasterSettings,
    GruForecaster,
    Progress,
)

OPSET = 17
INPUT_NAMES = ["steps", "segment", "base", "slots"]
OUTPUT_NAMES = ["forecast", "observed_probability"]


def export_onnx(model: GruForecaster, path: Path) -> None:
    """Write the trained network as ONNX with a dynamic batch."""
    network = model.network
    window = model.settings.window
    features = model.feature_count
    example = (
        torch.zeros(2, window, features),
        torch.zeros(2, dtype=torch.int64),
        torch.zeros(2),
        torch.zeros(2, window + max(model.settings.horizons), dtype=torch.int64),
    )
    torch.onnx.export(
        network,
        example,
        str(path),
        input_names=INPUT_NAMES,
        output_names=OUTPUT_NAMES,
        dynamic_axes={name: {0: "batch"} for name in [*INPUT_NAMES, *OUTPUT_NAMES]},
        opset_version=OPSET,
        dynamo=False,  # the default exporter needs onnxscript (docs/pitfalls.md #6)
    )


def parity(model: GruForecaster, path: Path, samples: int = 64) -> float:
    """Largest absolute difference between torch and ONNX Runtime, over all outputs."""
    rng = np.random.default_rng(0)
    settings = model.settings
    steps = rng.normal(size=(samples, settings.window, model.feature_count)).astype(np.float32)
    feed = {
        "steps": steps,
        "segment": rng.integers(0, model.segments, size=samples).astype(np.int64),
        "base": rng.normal(size=samples).astype(np.float32),
        "slots": rng.integers(
            0, model.spec.slots_per_day, size=(samples, settings.window + max(settings.horizons))
        ).astype(np.int64),
    }
    with torch.no_grad():
        expected = model.network(**{k: torch.from_numpy(v) for k, v in feed.items()})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(OUTPUT_NAMES, dict(feed))
    return max(
        float(np.max(np.abs(np.asarray(g) - e.numpy()))) for g, e in zip(got, expected, strict=True)
    )


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
            "slots": "batch x (window + max(horizons)), int64 time-of-day slot of each input "
            "step, then of each target step (continuing from the last input step); "
            "slot = round(minutes since midnight / interval_min) mod slots_per_day",
        },
        "outputs": {
            "forecast": "batch x max(horizons), normalised speed given that it is observed; "
            "speed = out * std + mean (serve this)",
            "observed_probability": "batch x max(horizons), probability that the step is "
            "observed at all; observed_probability * speed is the expected recorded value "
            "(0 = no observation), which the T-GCN protocol's unmasked metrics score",
        },
        "features": model.spec.names,
        "daily_profile": "per segment and time-of-day slot, the mean observed normalised "
        "value and the observed share, from the training rows before the validation slice, "
        "smoothed over +-profile_smoothing_min and shrunk towards the segment's figure with "
        "profile_prior pseudo-steps; constant buffers inside the ONNX, looked up with slots",
        "window": settings.window,
        "horizons": list(settings.horizons),
        "interval_min": interval_min,
        "time_zone": model.time_zone,
        "slots_per_day": model.spec.slots_per_day,
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
