"""A GRU traffic forecaster: one global model for all segments, all horizons at once.

Inputs per step and segment: the normalised value (0 where missing), a
missing-data flag, time of day and day of week (sin/cos) and, when given, the
weather code one-hot. A learned segment embedding joins every step, and so
does the segment's daily profile at that time of day (mean observed value and
observed share per time-of-day slot, learnt from the training data and kept in
the network as constant buffers, so they travel inside the ONNX).

Two outputs per horizon step:

- ``forecast``: the speed given that it is observed, as an offset from the
  window's mean of observed values; the head also sees the profile at the
  target times. Trained with the squared error on observed targets only.
- ``observed_probability``: the probability that the step is observed at all
  (sigmoid, trained with binary cross-entropy on the target mask).

``forecast`` is what users are served. ``observed_probability * forecast`` is
the expected *recorded* value (0 where nothing is recorded): what the T-GCN
protocol's unmasked metrics compare against a series whose zeros are gaps.
Several members trained from different seeds are averaged inside one module;
each stops early on a validation slice cut from the end of the training part.

Needs the ``train`` extra (torch).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from roadsense.models.forecast.features import (
    FeatureSpec,
    WindowInputs,
    step_features,
    time_slots,
    window_inputs,
)
from roadsense.models.forecast.profile import daily_profile
from roadsense.models.forecast.series import Series

Array = npt.NDArray[np.float64]
Progress = Callable[[int, int, float], None]
"""progress(epoch, epochs, validation_loss)."""
Samples = tuple[torch.Tensor, ...]
"""steps, segment, base, slots, target (normalised), mask (target observed)."""


@dataclass(frozen=True)
class ForecasterSettings:
    """Shape and training of the model.

    Defaults chosen on the validation slice of the SZ-taxi 40-road subset's
    training part (variant log in models/artifacts/forecaster/README.md).
    """

    window: int = 4
    horizons: tuple[int, ...] = (1, 2, 3, 4)
    hidden: int = 64
    embedding: int = 8
    epochs: int = 40
    patience: int = 3
    batch_size: int = 1024
    learning_rate: float = 3e-3
    weight_decay: float = 0.0
    dropout: float = 0.0
    members: int = 3
    """networks from seeds seed, seed + 1, ... averaged in one module"""
    profile_smoothing_min: float = 15.0
    """half-width of the time-of-day smoothing of the daily profile, in minutes"""
    profile_prior: float = 64.0
    """pseudo-steps of the segment's overall figure mixed into each profile slot"""
    validation_fraction: float = 0.1
    seed: int = 0


def _logit(share: torch.Tensor) -> torch.Tensor:
    clamped = share.clamp(1e-3, 1 - 1e-3)
    return torch.log(clamped / (1 - clamped))


class _Member(nn.Module):
    """One GRU with a speed head and an observation head."""

    def __init__(self, segments: int, features: int, settings: ForecasterSettings) -> None:
        super().__init__()
        horizon = max(settings.horizons)
        self.embedding = nn.Embedding(segments, settings.embedding)
        self.gru = nn.GRU(features + 2 + settings.embedding, settings.hidden, batch_first=True)
        self.dropout = nn.Dropout(settings.dropout)
        head_inputs = settings.hidden + settings.embedding + 2 * horizon
        self.speed = nn.Linear(head_inputs, horizon)
        self.presence = nn.Linear(head_inputs, horizon)

    def forward(
        self,
        steps: torch.Tensor,
        segment: torch.Tensor,
        base: torch.Tensor,
        profile: torch.Tensor,
        share: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(speed, observation logit), batch x horizon.

        ``profile`` and ``share`` are the daily profile at each input and target step.
        """
        window = steps.shape[1]
        embedded = self.embedding(segment)
        repeated = embedded.unsqueeze(1).expand(-1, window, -1)
        daily = torch.stack([profile[:, :window], share[:, :window]], dim=2)
        _, state = self.gru(torch.cat([steps, daily, repeated], dim=2))
        ahead = torch.cat(
            [profile[:, window:] - base.unsqueeze(1), _logit(share[:, window:])], dim=1
        )
        hidden = self.dropout(torch.cat([state[-1], embedded, ahead], dim=1))
        speed: torch.Tensor = base.unsqueeze(1) + self.speed(hidden)
        logit: torch.Tensor = self.presence(hidden)
        return speed, logit


class _Network(nn.Module):
    """The exported module: profile look-up, then the members' average."""

    profile: torch.Tensor
    share: torch.Tensor

    def __init__(self, profile: torch.Tensor, share: torch.Tensor, members: list[_Member]) -> None:
        super().__init__()
        self.register_buffer("profile", profile)
        self.register_buffer("share", share)
        self.members = nn.ModuleList(members)

    def lookup(
        self, segment: torch.Tensor, slots: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(profile, share) at each slot of each row's segment."""
        flat = segment.unsqueeze(1) * self.profile.shape[1] + slots
        return self.profile.reshape(-1)[flat], self.share.reshape(-1)[flat]

    def forward(
        self, steps: torch.Tensor, segment: torch.Tensor, base: torch.Tensor, slots: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(forecast, observed_probability), batch x horizon."""
        profile, share = self.lookup(segment, slots)
        speeds, probabilities = [], []
        for member in self.members:
            speed, logit = member(steps, segment, base, profile, share)
            speeds.append(speed)
            probabilities.append(torch.sigmoid(logit))
        return torch.stack(speeds).mean(dim=0), torch.stack(probabilities).mean(dim=0)


@dataclass(frozen=True)
class WindowForecast:
    """De-normalised forecasts, each windows x horizons(max) x segments."""

    speed: Array
    """speed given that it is observed (what users are served)"""
    observed_probability: Array

    @property
    def expected(self) -> Array:
        """Expected recorded value, 0 standing for no observation (T-GCN protocol)."""
        return self.observed_probability * self.speed


def _head(series: Series, stop: int) -> Series:
    """The first ``stop`` rows of a series."""
    weather = series.weather[:stop] if series.weather is not None else None
    return replace(
        series,
        values=series.values[:stop],
        observed=series.observed[:stop],
        times=series.times[:stop],
        weather=weather,
    )


class GruForecaster:
    """Owns scaling, windowing, the daily profile, training and prediction."""

    def __init__(self, settings: ForecasterSettings) -> None:
        self.settings = settings
        self.mean = 0.0
        self.std = 1.0
        self.interval_min = 15.0
        self.time_zone = "UTC"
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
        """Scaling, weather coding and slots learnt in fit() (written to the card)."""
        return FeatureSpec(
            self.mean, self.std, tuple(self.weather_codes), self.interval_min, self.time_zone
        )

    @property
    def feature_count(self) -> int:
        """Features per step: value, observed flag, 4 time features, weather one-hot."""
        return self.spec.count

    def _step_features(self, series: Series) -> npt.NDArray[np.float32]:
        """steps x segments x features."""
        return step_features(
            self.spec, series.values, series.observed, series.times, series.weather
        )

    def _inputs(self, series: Series, starts: npt.NDArray[np.int64]) -> WindowInputs:
        features = self._step_features(series)
        slots = time_slots(self.spec, series.times)
        w, h = self.settings.window, max(self.settings.horizons)
        return window_inputs(
            self.spec, features, slots, starts=starts.tolist(), window=w, horizon=h
        )

    def _samples(self, series: Series, rows: range) -> Samples:
        """Windows starting at ``rows`` for every segment, with their targets and masks."""
        w, h = self.settings.window, max(self.settings.horizons)
        starts = np.array(list(rows), dtype=np.int64)
        inputs = self._inputs(series, starts)
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
            torch.from_numpy(inputs.slots),
            torch.from_numpy(targets.astype(np.float32)),
            torch.from_numpy(masks.reshape(-1, h)),
        )

    def _learn_scaling(self, series: Series) -> None:
        observed_values = series.values[series.observed]
        if observed_values.size == 0:
            raise ValueError("the training part has no observed values")
        self.mean = float(observed_values.mean())
        self.std = float(observed_values.std()) or 1.0
        self.weather_codes = (
            sorted(int(c) for c in np.unique(series.weather)) if series.weather is not None else []
        )
        self.time_zone = series.time_zone
        if len(series.times) > 1:
            gaps = np.diff([t.timestamp() for t in series.times]) / 60
            self.interval_min = float(np.median(gaps)) or 15.0
        self.segments = series.values.shape[1]

    def _profile(self, series: Series) -> tuple[torch.Tensor, torch.Tensor]:
        spec = self.spec
        half_width = round(self.settings.profile_smoothing_min / spec.interval_min)
        profile, share = daily_profile(
            (series.values - self.mean) / self.std,
            series.observed,
            time_slots(spec, series.times),
            slots_per_day=spec.slots_per_day,
            half_width=half_width,
            prior=self.settings.profile_prior,
        )
        return torch.from_numpy(profile), torch.from_numpy(share)

    # Training and prediction ---------------------------------------------------

    def fit(self, series: Series, progress: Progress | None = None) -> dict[str, float]:
        """Train on the whole series given (the caller passes only the training part)."""
        settings = self.settings
        self._learn_scaling(series)
        w, h = settings.window, max(settings.horizons)
        usable = series.steps - w - h
        if usable <= 10:
            raise ValueError(f"{series.steps} steps are too few to train windows of {w} + {h}")
        cut = int(usable * (1 - settings.validation_fraction))
        train = self._samples(series, range(cut))
        valid = self._samples(series, range(cut + w + h, usable)) if usable - cut > w + h else train
        # The profile comes from the rows before the validation slice only, so the
        # validation figures are those of the model as it is used afterwards.
        network = _Network(*self._profile(_head(series, cut + w + h)), [])
        network.eval()
        epochs = []
        for index in range(settings.members):
            member, epoch = self._train_member(
                network, settings.seed + index, train, valid, progress
            )
            network.members.append(member)
            epochs.append(epoch)
        network.eval()
        self._network = network
        return {**self._validation_figures(network, valid), "best_epoch": float(np.mean(epochs))}

    def _train_member(
        self,
        network: _Network,
        seed: int,
        train: Samples,
        valid: Samples,
        progress: Progress | None,
    ) -> tuple[_Member, int]:
        """One member trained with early stopping; returns it and its best epoch (1-based)."""
        settings = self.settings
        torch.manual_seed(seed)
        member = _Member(self.segments, train[0].shape[2], settings)
        optimiser = torch.optim.AdamW(
            member.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
        )
        with torch.no_grad():
            train_daily = network.lookup(train[1], train[3])
        best = (math.inf, 0)
        best_state = None
        generator = torch.Generator().manual_seed(seed)
        for epoch in range(settings.epochs):
            member.train()
            order = torch.randperm(len(train[0]), generator=generator)
            for start in range(0, len(order), settings.batch_size):
                batch = order[start : start + settings.batch_size]
                steps, segment, base, _, target, mask = (t[batch] for t in train)
                daily = (train_daily[0][batch], train_daily[1][batch])
                speed, logit = member(steps, segment, base, *daily)
                loss = self._loss(speed, logit, target, mask)
                optimiser.zero_grad()
                torch.autograd.backward(loss)
                optimiser.step()
            loss_value = self._member_loss(network, member, valid)
            if progress:
                progress(epoch + 1, settings.epochs, loss_value)
            if loss_value < best[0]:
                best = (loss_value, epoch)
                best_state = {k: v.clone() for k, v in member.state_dict().items()}
            elif epoch - best[1] >= settings.patience:
                break
        assert best_state is not None
        member.load_state_dict(best_state)
        member.eval()
        return member, best[1] + 1

    @staticmethod
    def _loss(
        speed: torch.Tensor, logit: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Squared error on observed targets plus cross-entropy of the observation flag."""
        weights = mask.float()
        squared = ((speed - target) ** 2 * weights).sum() / weights.sum().clamp(min=1)
        presence = nn.functional.binary_cross_entropy_with_logits(logit, weights)
        return squared + presence

    def _member_loss(self, network: _Network, member: _Member, data: Samples) -> float:
        member.eval()
        with torch.no_grad():
            steps, segment, base, slots, target, mask = data
            speed, logit = member(steps, segment, base, *network.lookup(segment, slots))
            return float(self._loss(speed, logit, target, mask))

    def _validation_figures(self, network: _Network, data: Samples) -> dict[str, float]:
        """Loss and, in data units, masked RMSE and the T-GCN (zeros scored) RMSE."""
        with torch.no_grad():
            steps, segment, base, slots, target, mask = data
            speed, probability = network(steps, segment, base, slots)
        weights = mask.float()
        squared = ((speed - target) ** 2 * weights).sum() / weights.sum().clamp(min=1)
        presence = nn.functional.binary_cross_entropy(probability.clamp(1e-6, 1 - 1e-6), weights)
        speed_units = speed * self.std + self.mean
        recorded = torch.where(mask, target * self.std + self.mean, torch.zeros_like(target))
        return {
            "validation_loss": float(squared + presence),
            "validation_masked_rmse": float(squared.sqrt() * self.std),
            "validation_rmse": float(((probability * speed_units - recorded) ** 2).mean().sqrt()),
        }

    def predict_windows(self, series: Series, starts: range) -> WindowForecast:
        """De-normalised forecasts for every segment of the windows beginning at ``starts``."""
        if self._network is None:
            raise RuntimeError("fit() first")
        if series.values.shape[1] != self.segments:
            raise ValueError(f"{series.values.shape[1]} segments, the model knows {self.segments}")
        inputs = self._inputs(series, np.array(list(starts), dtype=np.int64))
        with torch.no_grad():
            feed = {name: torch.from_numpy(a) for name, a in inputs.feed().items()}
            speed, probability = self._network(**feed)
        h = max(self.settings.horizons)

        def arrange(output: torch.Tensor) -> Array:
            grid = output.numpy().reshape(len(starts), self.segments, h).transpose(0, 2, 1)
            return np.asarray(grid, dtype=np.float64)

        return WindowForecast(arrange(speed) * self.std + self.mean, arrange(probability))
