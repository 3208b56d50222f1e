"""A GRU traffic forecaster: one global model for all segments, all horizons at once.

Inputs per step and segment: the normalised value (0 where missing), a
missing-data flag, time of day and day of week (sin/cos) and, when given, the
weather code one-hot. A learned segment embedding joins every step. The GRU's
last state predicts the offset of each horizon from the window's mean of
observed values (a historical-average residual). Training minimises the
squared error on observed targets only, with early stopping on a validation
slice cut from the end of the training part.

Needs the ``train`` extra (torch).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from roadsense.models.forecast_features import FeatureSpec, step_features, window_inputs
from roadsense.models.series import Series

Array = npt.NDArray[np.float64]
Progress = Callable[[int, int, float], None]
"""progress(epoch, epochs, validation_loss)."""


@dataclass(frozen=True)
class ForecasterSettings:
    """Shape and training of the model."""

    window: int = 4
    horizons: tuple[int, ...] = (1, 2, 3, 4)
    hidden: int = 64
    embedding: int = 8
    epochs: int = 40
    patience: int = 5
    batch_size: int = 512
    learning_rate: float = 2e-3
    validation_fraction: float = 0.1
    seed: int = 0


class _Network(nn.Module):
    def __init__(self, segments: int, features: int, settings: ForecasterSettings) -> None:
        super().__init__()
        self.embedding = nn.Embedding(segments, settings.embedding)
        self.gru = nn.GRU(features + settings.embedding, settings.hidden, batch_first=True)
        self.head = nn.Linear(settings.hidden + settings.embedding, max(settings.horizons))

    def forward(
        self, steps: torch.Tensor, segment: torch.Tensor, base: torch.Tensor
    ) -> torch.Tensor:
        embedded = self.embedding(segment)
        repeated = embedded.unsqueeze(1).expand(-1, steps.shape[1], -1)
        _, state = self.gru(torch.cat([steps, repeated], dim=2))
        offset: torch.Tensor = self.head(torch.cat([state[-1], embedded], dim=1))
        return base.unsqueeze(1) + offset


class GruForecaster:
    """Owns scaling, windowing, training and prediction around the network."""

    def __init__(self, settings: ForecasterSettings) -> None:
        self.settings = settings
        self.mean = 0.0
        self.std = 1.0
        self.weather_codes: list[int] = []
        self._network: _Network | None = None
        self.segments = 0

    @property
    def network(self) -> nn.Module:
        """The trained torch module (for export)."""
        if self._network is None:
            raise RuntimeError("fit() first")
        return self._network

    @property
    def spec(self) -> FeatureSpec:
        """Scaling and weather coding learnt in fit() (written to the card)."""
        return FeatureSpec(self.mean, self.std, tuple(self.weather_codes))

    @property
    def feature_count(self) -> int:
        """Features per step: value, observed flag, 4 time features, weather one-hot."""
        return self.spec.count

    def _step_features(self, series: Series) -> npt.NDArray[np.float32]:
        """steps x segments x features."""
        return step_features(
            self.spec, series.values, series.observed, series.times, series.weather
        )

    def _samples(
        self, features: npt.NDArray[np.float32], series: Series, rows: range
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Windows starting at ``rows`` for every segment: inputs, segment, base, target, mask."""
        w, h = self.settings.window, max(self.settings.horizons)
        starts = np.array(list(rows))
        inputs = window_inputs(features, starts.tolist(), w)
        wanted = starts[:, None] + w + np.arange(h)[None, :]
        # Windows near the end have no targets for the far horizons (prediction only).
        inside = wanted < series.steps
        target_index = np.minimum(wanted, series.steps - 1)
        normalised = (series.values - self.mean) / self.std
        targets = np.transpose(normalised[target_index], (0, 2, 1)).reshape(-1, h)
        masks = np.transpose(series.observed[target_index] & inside[:, :, None], (0, 2, 1))
        return (
            torch.from_numpy(inputs.steps),
            torch.from_numpy(inputs.segment),
            torch.from_numpy(inputs.base),
            torch.from_numpy(targets.astype(np.float32)),
            torch.from_numpy(masks.reshape(-1, h)),
        )

    # Training and prediction ---------------------------------------------------

    def fit(self, series: Series, progress: Progress | None = None) -> dict[str, float]:
        """Train on the whole series given (the caller passes only the training part)."""
        settings = self.settings
        torch.manual_seed(settings.seed)
        observed_values = series.values[series.observed]
        if observed_values.size == 0:
            raise ValueError("the training part has no observed values")
        self.mean = float(observed_values.mean())
        self.std = float(observed_values.std()) or 1.0
        self.weather_codes = (
            sorted(int(c) for c in np.unique(series.weather)) if series.weather is not None else []
        )
        self.segments = series.values.shape[1]
        features = self._step_features(series)
        w, h = settings.window, max(settings.horizons)
        usable = series.steps - w - h
        if usable <= 10:
            raise ValueError(f"{series.steps} steps are too few to train windows of {w} + {h}")
        cut = int(usable * (1 - settings.validation_fraction))
        train = self._samples(features, series, range(cut))
        valid = (
            self._samples(features, series, range(cut + w + h, usable))
            if usable - cut > w + h
            else train
        )
        network = _Network(self.segments, features.shape[2], settings)
        optimiser = torch.optim.Adam(network.parameters(), lr=settings.learning_rate)
        best = (math.inf, 0)
        best_state = None
        generator = torch.Generator().manual_seed(settings.seed)
        for epoch in range(settings.epochs):
            network.train()
            order = torch.randperm(len(train[0]), generator=generator)
            for start in range(0, len(order), settings.batch_size):
                batch = order[start : start + settings.batch_size]
                steps, segment, base, target, mask = (t[batch] for t in train)
                prediction = network(steps, segment, base)
                loss = ((prediction - target) ** 2 * mask).sum() / mask.sum().clamp(min=1)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
            loss_value = self._loss(network, valid)
            if progress:
                progress(epoch + 1, settings.epochs, loss_value)
            if loss_value < best[0]:
                best = (loss_value, epoch)
                best_state = {k: v.clone() for k, v in network.state_dict().items()}
            elif epoch - best[1] >= settings.patience:
                break
        assert best_state is not None
        network.load_state_dict(best_state)
        network.eval()
        self._network = network
        return {"validation_loss": best[0], "best_epoch": float(best[1] + 1)}

    @staticmethod
    def _loss(network: _Network, data: tuple[torch.Tensor, ...]) -> float:
        network.eval()
        with torch.no_grad():
            steps, segment, base, target, mask = data
            prediction = network(steps, segment, base)
            return float(((prediction - target) ** 2 * mask).sum() / mask.sum().clamp(min=1))

    def predict_windows(self, series: Series, starts: range) -> Array:
        """De-normalised predictions: windows x horizons(max) x segments."""
        if self._network is None:
            raise RuntimeError("fit() first")
        if series.values.shape[1] != self.segments:
            raise ValueError(f"{series.values.shape[1]} segments, the model knows {self.segments}")
        features = self._step_features(series)
        steps, segment, base, _, _ = self._samples(features, series, starts)
        with torch.no_grad():
            output = self._network(steps, segment, base).numpy()
        h = max(self.settings.horizons)
        output = output.reshape(len(starts), self.segments, h).transpose(0, 2, 1)
        return np.asarray(output * self.std + self.mean, dtype=np.float64)
