"""The steps a rollout takes on its own: send, re-send, read the fleet, judge, promote,
roll back; each transition recorded with its reason (``roadsense.cloud.rollout.controller``)."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace

from roadsense.cloud.releases.delivery import model_update
from roadsense.cloud.rollout.config import RolloutConfig
from roadsense.cloud.rollout.kinds import release_kind, running_version
from roadsense.cloud.rollout.records import (
    DeviceState,
    Rollout,
    RolloutDevice,
    RolloutEvent,
    RolloutState,
)
from roadsense.cloud.rollout.rows import RolloutStore
from roadsense.cloud.rollout.verdict import (
    DeviceFigures,
    MeasuredMeans,
    Verdict,
    compare,
    device_figures,
)
from roadsense.cloud.rollout.verdict import parse_health as _health
from roadsense.core.errors import RolloutError
from roadsense.core.publisher import Publisher
from roadsense.proto.model_kinds import DETECTOR
from roadsense.proto.refusals import Refusal, refusal_of
from roadsense.proto.topics import command_topic

logger = logging.getLogger(__name__)

CONTROLLER = "controller"
"""The actor of transitions the controller makes on its own."""
PENDING = ("sent", "rolling_back")
EVER = 2**62


def is_model_fault(error: str) -> bool:
    """True when a device's refusal blames the model rather than the device."""
    reason = refusal_of(error)
    return reason is not None and reason.blames_model


class RolloutSteps:
    """What the controller does to a rollout; the caller holds the controller's lock."""

    def __init__(
        self,
        store: RolloutStore,
        config: RolloutConfig,
        commands: Publisher,
        clock: Callable[[], int],
    ) -> None:
        self._store = store
        self._config = config
        self._commands = commands
        self._clock = clock

    def publish(self, rollout: Rollout, row: RolloutDevice, now: int) -> RolloutDevice:
        model = self._store.model(row.want_version)
        if model is None:  # published models are never removed; a store restored from old
            logger.error(
                "rollout %s: model %s is not published", rollout.rollout_id, row.want_version
            )
            return row
        update = model_update(model, row.request_id, rollout_id=rollout.rollout_id)
        self._commands.publish(
            command_topic(row.device_id, "model"), update.SerializeToString(), qos=1
        )
        return replace(row, sent_ms=now, attempts=row.attempts + 1, updated_ms=now)

    def send_stage(
        self, rollout: Rollout, devices: Sequence[RolloutDevice], stage: int, now: int
    ) -> list[RolloutDevice]:
        sent = []
        for row in devices:
            if row.stage != stage or row.state != "waiting":
                continue
            wanted = replace(
                row,
                want_version=rollout.model_version,
                state="sent",
                request_id=uuid.uuid4().hex[:12],
                error="",
                attempts=0,
            )
            sent.append(self.publish(rollout, wanted, now))
        return sent

    def refresh(
        self, rollout: Rollout, devices: list[RolloutDevice], now: int
    ) -> list[RolloutDevice]:
        """Devices whose health shows the wanted version of the rollout's kind in force are
        done, reply or not."""
        kind = release_kind(self._store, rollout.model_version)
        changed, out = [], []
        for row in devices:
            seen = row
            if row.state in PENDING and row.sent_ms:
                newest = self._store.device_health(
                    row.device_id, row.sent_ms, EVER, newest_only=True
                )
                version = running_version(_health(newest[0]), kind) if newest else ""
                if version and version != row.reported_version:
                    seen = replace(row, reported_version=version, updated_ms=now)
                    if version == row.want_version:
                        done: DeviceState = "applied" if row.state == "sent" else "rolled_back"
                        seen = replace(seen, state=done)
                    changed.append(seen)
            out.append(seen)
        if changed:
            self._store.save_rollout_devices(changed)
        return out

    def resend(
        self, rollout: Rollout, devices: list[RolloutDevice], now: int
    ) -> list[RolloutDevice]:
        """Send again to devices that were heard from since and still lack the version."""
        resend_ms = int(self._config.resend_s * 1000)
        changed, out = [], []
        for row in devices:
            due = row.state in PENDING and now - row.sent_ms >= resend_ms
            if due and self._store.device_health(
                row.device_id, row.sent_ms, EVER, newest_only=True
            ):
                logger.info(
                    "rollout %s: sending %s to %s again (attempt %d)",
                    rollout.rollout_id,
                    row.want_version,
                    row.device_id,
                    row.attempts + 1,
                )
                again = self.publish(rollout, row, now)
                changed.append(again)
                out.append(again)
            else:
                out.append(row)
        if changed:
            self._store.save_rollout_devices(changed)
        return out

    def transition(
        self,
        rollout: Rollout,
        new: Rollout,
        actor: str,
        reason: str,
        devices: Sequence[RolloutDevice] = (),
    ) -> bool:
        now = self._clock()
        new = replace(new, updated_ms=now, reason=reason)
        event = RolloutEvent(rollout.rollout_id, now, actor, rollout.state, new.state, reason)
        if not self._store.update_rollout(new, rollout.state, event, devices):
            raise RolloutError(f"rollout {rollout.rollout_id} changed meanwhile; look again")
        logger.info(
            "rollout %s: %s -> %s by %s: %s",
            rollout.rollout_id,
            rollout.state,
            new.state,
            actor,
            reason,
        )
        return True

    def roll_back(self, rollout: Rollout, state: RolloutState, actor: str, reason: str) -> None:
        now = self._clock()
        back = []
        for row in self._store.rollout_devices(rollout.rollout_id):
            took = row.state in ("sent", "applied") and row.want_version == rollout.model_version
            if took and row.previous_version != rollout.model_version:
                wanted = replace(
                    row,
                    want_version=row.previous_version,
                    state="rolling_back",
                    request_id=uuid.uuid4().hex[:12],
                    attempts=0,
                )
                back.append(self.publish(rollout, wanted, now))
        note = f"{reason}; {len(back)} device(s) sent their previous model back"
        self.transition(rollout, replace(rollout, state=state, resume_state=""), actor, note, back)

    def fail(self, rollout: Rollout, reason: str) -> None:
        self.roll_back(rollout, "failed", CONTROLLER, reason)

    def faults(self, devices: Sequence[RolloutDevice]) -> str:
        """Why devices refused for model faults, one clause each ('' when none did)."""
        return "; ".join(
            f"{d.device_id}: {d.error}"
            for d in devices
            if d.state == "refused" and is_model_fault(d.error)
        )

    def too_many_faults(self, devices: Sequence[RolloutDevice]) -> bool:
        sent = [d for d in devices if d.want_version or d.state == "refused"]
        faults = [d for d in sent if d.state == "refused" and is_model_fault(d.error)]
        return (
            bool(faults)
            and len(faults) / max(1, len(sent)) > self._config.thresholds.max_failure_share
        )

    def advance_canary(self, rollout: Rollout, devices: list[RolloutDevice], now: int) -> None:
        canaries = [d for d in devices if d.stage == 0]
        if self.too_many_faults(canaries):
            self.fail(rollout, f"canary refused the model: {self.faults(canaries)}")
            return
        evaluation = json.loads(rollout.evaluation_json or "{}")
        window_start = evaluation.get("window_start_ms")
        if window_start is None:
            answered = all(d.state in ("applied", "refused") for d in canaries)
            timed_out = now - rollout.stage_started_ms >= self._config.apply_timeout_s * 1000
            if not (answered or timed_out):
                return
            applied = [d.device_id for d in canaries if d.state == "applied"]
            if not applied:
                self.fail(
                    rollout,
                    f"no canary device runs {rollout.model_version} after "
                    f"{(now - rollout.stage_started_ms) / 1000:.0f} s",
                )
                return
            evaluation = {"window_start_ms": now, "canaries": applied}
            opened = replace(rollout, evaluation_json=json.dumps(evaluation))
            self.transition(
                rollout,
                opened,
                CONTROLLER,
                f"{len(applied)} canary device(s) run {rollout.model_version}; watching them "
                f"{self._config.window_s:g} s against the control",
            )
            return
        if now < window_start + self._config.window_s * 1000:
            return
        verdict, figures = self.evaluate(rollout, devices, int(window_start))
        evaluation.update(
            verdict="pass" if verdict.ok else "fail",
            canary=verdict.canary,
            control=verdict.control,
            failures=verdict.failures,
            devices=[f.as_json() for f in figures],
        )
        judged = replace(rollout, evaluation_json=json.dumps(evaluation))
        if not verdict.ok:
            self.fail(judged, "canary outside thresholds: " + "; ".join(verdict.failures))
            return
        self.promote(judged, devices, 1, now, "canary within thresholds: " + _summary(verdict))

    def advance_stage(self, rollout: Rollout, devices: list[RolloutDevice], now: int) -> None:
        sent = [d for d in devices if 0 < d.stage <= rollout.stage]
        if self.too_many_faults(sent):
            self.fail(rollout, f"stage {rollout.stage} refused the model: {self.faults(sent)}")
            return
        stage = [d for d in devices if d.stage == rollout.stage]
        # An offline device cannot answer now; it gets the model when it is back.
        online = {d.device_id for d in self._store.devices() if d.online}
        answered = all(
            d.state in ("applied", "refused") or d.device_id not in online for d in stage
        )
        timed_out = now - rollout.stage_started_ms >= self._config.apply_timeout_s * 1000
        if not (answered or timed_out):
            return
        last = len(self._config.stages_percent)
        if rollout.stage < last:
            self.promote(
                rollout, devices, rollout.stage + 1, now, f"stage {rollout.stage} answered"
            )
            return
        counts = {s: sum(d.state == s for d in devices) for s in ("applied", "refused", "sent")}
        self.transition(
            rollout,
            replace(rollout, state="done"),
            CONTROLLER,
            f"every stage sent: {counts['applied']} of {len(devices)} devices run "
            f"{rollout.model_version}, {counts['refused']} refused, {counts['sent']} pending "
            "(they get it when they are back)",
        )

    def promote(
        self, rollout: Rollout, devices: list[RolloutDevice], stage: int, now: int, reason: str
    ) -> None:
        sent = self.send_stage(rollout, devices, stage, now)
        promoted = replace(rollout, state="promoting", stage=stage, stage_started_ms=now)
        percent = self._config.stages_percent[stage - 1]
        self.transition(
            rollout,
            promoted,
            CONTROLLER,
            f"{reason}; stage {stage} ({percent:g}% of the rest): {len(sent)} device(s) sent",
            sent,
        )

    def evaluate(
        self, rollout: Rollout, devices: Sequence[RolloutDevice], window_start: int
    ) -> tuple[Verdict, list[DeviceFigures]]:
        config = self._config
        window_end = window_start + int(config.window_s * 1000)
        history_from = rollout.created_ms - int(config.history_s * 1000)
        measuring = release_kind(self._store, rollout.model_version) == DETECTOR
        canary, control, baseline = [], [], []

        def figures(device: str) -> DeviceFigures:
            store = self._store
            measured: MeasuredMeans | None = None
            history: MeasuredMeans = ()
            if measuring:
                measured = store.device_measured(device, window_start, window_end)
                history = store.device_measured(device, history_from, rollout.created_ms)
            return device_figures(
                device,
                health=store.device_health(device, window_start, window_end),
                levels=store.device_levels(device, window_start, window_end),
                history_levels=store.device_levels(device, history_from, rollout.created_ms),
                window_s=config.window_s,
                min_reports=config.min_reports,
                measured=measured,
                history_measured=history,
            )

        for row in devices:
            if row.stage == 0 and row.state == "applied":
                canary.append(figures(row.device_id))
                before = self._store.device_health(row.device_id, history_from, rollout.created_ms)
                baseline += [_health(h).inference_p95_ms for h in before]
            elif row.stage > 0 and row.state == "waiting":
                control.append(figures(row.device_id))
        known = [p for p in baseline if p > 0]
        verdict = compare(
            canary,
            control,
            config.thresholds,
            canary_baseline_p95_ms=sum(known) / len(known) if known else None,
        )
        return verdict, canary + control


def answered(row: RolloutDevice, ok: bool, error: str, version: str, now: int) -> RolloutDevice:
    """A device row after the device's reply."""
    if row.state not in PENDING:
        return row
    if ok:
        if version != row.want_version:
            return replace(row, reported_version=version, updated_ms=now)
        done: DeviceState = "applied" if row.state == "sent" else "rolled_back"
        return replace(row, state=done, reported_version=version, error="", updated_ms=now)
    error = error[:500] or "refused without a reason"
    reason = refusal_of(error)
    if reason is None:
        logger.warning(
            "device %s refused with a reason this cloud does not know: %s", row.device_id, error
        )
    if reason is Refusal.SUPERSEDED:  # a later command to it is the one that counts
        return row
    if reason is not None and reason.retried:  # keep it pending: the re-send tries again
        return replace(row, error=error, updated_ms=now)
    if row.state == "rolling_back":
        # It keeps the model it runs (the agent never drops a working one); say so.
        return replace(row, error=f"rollback refused: {error}", updated_ms=now)
    return replace(row, state="refused", error=error, reported_version=version, updated_ms=now)


def _summary(verdict: Verdict) -> str:
    a, b = verdict.canary, verdict.control
    parts = []
    for key, label in (
        ("p95_ms", "p95 ms"),
        ("reports_per_min", "reports/min"),
        ("uncertain_share", "uncertain"),
        ("level_shift", "JSD"),
        ("vehicle_change", "vehicles change"),
        ("stopped_change", "stopped share change"),
    ):
        if key in a:  # the measured figures: of a detector rollout only
            parts.append(f"{label} {_fmt(a[key])} vs {_fmt(b[key])}")
    return ", ".join(parts)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"
