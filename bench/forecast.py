"""`roadsense bench forecast`: one batched forecast of many segments, ONNX Runtime vs torch.

The network is the forecaster's own, given ``segments`` segment embeddings and
trained for one epoch on a synthetic daily rhythm (speed does not depend on
the weights). Both runtimes get the same inputs, built by the code the cloud
uses; each is timed ``repeats`` times after a warm-up, median reported:

- ``onnxruntime_ms``: the exported ONNX in ONNX Runtime (CPU, 1 thread, as
  the cloud's forecast job runs it by default);
- ``torch_eager_ms``: the torch module in eager mode, no grad, 1 thread;
- ``torch_over_onnxruntime``: their ratio (above 1: ONNX Runtime is faster).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from roadsense.models.forecast.features import step_features, time_slots, window_inputs
from roadsense.models.forecast.series import Series
from roadsense.models.training.forecast.export import export_onnx
from roadsense.models.training.forecast.forecaster import ForecasterSettings, GruForecaster

STEPS = 24


def _synthetic(segments: int) -> Series:
    rng = np.random.default_rng(0)
    start = datetime(2026, 1, 5, tzinfo=timezone.utc)
    times = [start + timedelta(minutes=15 * i) for i in range(STEPS)]
    phase = np.arange(STEPS)[:, None] / 96 * 2 * np.pi
    values = 30 + 10 * np.sin(phase + rng.uniform(0, 6, segments)[None, :])
    values += rng.normal(0, 1, values.shape)
    return Series([f"s{i}" for i in range(segments)], values, values > 0, times)


def _median_ms(run: Callable[[], Any], repeats: int) -> float:
    run()  # warm-up
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def run_forecast_bench(segments: int = 10_000, repeats: int = 20) -> dict[str, Any]:
    """Figures of one batched forecast of ``segments`` segments (see the module doc)."""
    series = _synthetic(segments)
    settings = ForecasterSettings(epochs=1, patience=1)
    model = GruForecaster(settings)
    torch.set_num_threads(1)
    model.fit(series)
    window = settings.window
    spec = model.spec
    recent = slice(0, window)
    features = step_features(
        spec, series.values[recent], series.observed[recent], series.times[recent], None
    )
    feed = window_inputs(
        spec,
        features,
        time_slots(spec, series.times[recent]),
        starts=[0],
        window=window,
        horizon=max(settings.horizons),
    ).feed()
    with tempfile.TemporaryDirectory(prefix="roadsense-bench-") as workdir:
        path = Path(workdir) / "forecaster.onnx"
        export_onnx(model, path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        onnx_ms = _median_ms(lambda: session.run(None, feed), repeats)
    tensors = [torch.from_numpy(np.asarray(v)) for v in feed.values()]
    network = model.network

    def eager() -> None:
        with torch.no_grad():
            network(*tensors)

    torch_ms = _median_ms(eager, repeats)
    return {
        "segments": segments,
        "window": window,
        "horizons": max(settings.horizons),
        "repeats": repeats,
        "onnxruntime_ms": round(onnx_ms, 2),
        "torch_eager_ms": round(torch_ms, 2),
        "torch_over_onnxruntime": round(torch_ms / onnx_ms, 2),
        "threads": 1,
    }
