"""The rollout controller: canary, verdict, promotion in stages, automatic rollback.

A rollout is rows in the store (``roadsense.cloud.rollout_records``), so a restarted cloud
carries on where it stopped. Each tick the controller reads what the fleet reported
(health and replies on ``reply/model``), re-sends the ModelUpdate to devices that do not
show the wanted version yet (an offline device gets it when it is back), and moves the
rollout on: canary devices first; after the window the canary's figures against the
control's (``roadsense.cloud.rollout_metrics``); within thresholds the stages follow, out
of them the canaries get their previous version back and the rollout is marked failed
with the measured reason. Every transition is an event: who, when, from, to, why.

A device that refuses a model keeps the one it runs (the agent's contract), so a rollback
only has to send the previous version of devices that took the new one; a device that
holds a version applies it without downloading it again.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from google.protobuf.message import DecodeError

from roadsense.cloud.model_delivery import model_update
from roadsense.cloud.rollout_config import RolloutConfig
from roadsense.cloud.rollout_metrics import DeviceFigures, Verdict, compare, device_figures
from roadsense.cloud.rollout_metrics import parse_health as _health
from roadsense.cloud.rollout_plan import canary_size, plan_devices
from roadsense.cloud.rollout_records import (
    ACTIVE_STATES,
    DeviceState,
    Rollout,
    RolloutDevice,
    RolloutEvent,
    RolloutState,
)
from roadsense.cloud.store import Store
from roadsense.core.errors import NotFoundError, RequestError, RolloutError
from roadsense.core.publisher import Publisher
from roadsense.core.timeutil import now_ms
from roadsense.models.signing import is_model_version
from roadsense.proto.topics import PREFIX, command_topic, is_identifier
from roadsense.proto.v1 import telemetry_pb2

logger = logging.getLogger(__name__)

CONTROLLER = "controller"
"""The actor of transitions the controller makes on its own."""
MODEL_FAULTS = (
    "signature:",
    "sha256:",
    "size:",
    "card:",
    "version:",
    "load:",
    "self_test:",
    "latency:",
    "swap:",
)
"""Refusals that blame the model (or its release), not the device."""
RETRIED = ("download:",)
"""Refusals worth another try later (a cut link): the device stays pending."""
SUPERSEDED = "superseded:"
"""The device skipped this command for a later one it was sent (it answers that one)."""
REPLY_FILTER = f"{PREFIX}/+/reply/model"
PENDING = ("sent", "rolling_back")
EVER = 2**62


def is_model_fault(error: str) -> bool:
    """True when a device's refusal blames the model rather than the device."""
    return error.startswith(MODEL_FAULTS)


@dataclass(frozen=True)
class RolloutView:
    """A rollout with its devices and its recorded transitions."""

    rollout: Rollout
    devices: list[RolloutDevice]
    events: list[RolloutEvent]


def current_versions(store: Store, devices: Iterable[str]) -> dict[str, str]:
    """The model each device last said it runs (health, else its birth message; '')."""
    born = {d.device_id: d.model_version for d in store.devices()}
    versions = {}
    for device in devices:
        newest = store.device_health(device, 0, EVER, newest_only=True)
        version = _health(newest[0]).model_version if newest else ""
        versions[device] = version or born.get(device, "")
    return versions


class RolloutController:
    """Runs rollouts from the cloud process; one active rollout at a time."""

    def __init__(
        self,
        store: Store,
        config: RolloutConfig,
        commands: Publisher,
        fleet: Callable[[], Mapping[str, str]],
        *,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        """``fleet`` gives the devices a rollout may reach, each with its site ('')."""
        self._store = store
        self._config = config
        self._commands = commands
        self._fleet = fleet
        self._clock = clock
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- running -----------------------------------------------------------------------

    def start(self) -> None:
        """Listen for replies, connect, and tick in a thread of its own."""
        self._commands.subscribe(REPLY_FILTER, self.on_reply)
        self._commands.start()
        self._thread = threading.Thread(target=self._run, name="rollout-controller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop ticking and disconnect."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10.0)
        self._commands.stop()

    def _run(self) -> None:
        while not self._stop.wait(self._config.tick_s):
            try:
                self.tick()
            except Exception as err:  # a store server away: try again next tick
                logger.warning("rollout controller: tick failed: %s", err)

    # -- operator actions --------------------------------------------------------------

    def begin(
        self,
        model_version: str,
        *,
        actor: str,
        canary_percent: float | None = None,
        canary_devices: int | None = None,
        device_ids: Sequence[str] = (),
        site: str = "",
    ) -> RolloutView:
        """Start rolling ``model_version`` out; the canary devices get it at once."""
        if not is_model_version(model_version):
            raise RequestError("model_version is not a valid model version")
        model = self._store.model(model_version)
        if model is None:
            raise NotFoundError(f"no published model {model_version!r} (see `models list`)")
        targets = self._targets(device_ids, site)
        canaries = canary_size(len(targets), canary_percent, canary_devices)
        current = current_versions(self._store, targets)
        self._check_rollback_possible(current, model_version)
        now = self._clock()
        rollout_id = f"r{now}-{uuid.uuid4().hex[:6]}"
        online = {d.device_id for d in self._store.devices() if d.online}
        planned = plan_devices(
            rollout_id,
            model_version,
            current=current,
            online=online,
            canaries=canaries,
            stages_percent=self._config.stages_percent,
            now=now,
        )
        percent = canary_percent if canary_percent is not None else 100 * canaries / len(targets)
        reason = (
            f"{canaries} canary of {len(targets)} devices, then stages "
            f"{', '.join(f'{s:g}%' for s in self._config.stages_percent)} of the rest"
        )
        rollout = Rollout(
            rollout_id, model_version, "canary", percent, 0, now, now, actor, now, reason
        )
        with self._lock:
            event = RolloutEvent(rollout_id, now, actor, "", "canary", reason)
            if not self._store.add_rollout(rollout, planned, event):
                active = self._active()
                raise RolloutError(
                    f"rollout {active.rollout_id if active else '?'} is still active: "
                    "pause, roll back or let it finish before starting another"
                )
            self._supersede(rollout_id, planned, now)
            sent = self._send_stage(rollout, self._store.rollout_devices(rollout_id), 0, now)
            self._store.save_rollout_devices(sent)
        logger.info("rollout %s of %s started by %s: %s", rollout_id, model_version, actor, reason)
        return self.view(rollout.rollout_id)

    def pause(self, rollout_id: str, *, actor: str, reason: str = "") -> RolloutView:
        """Hold an active rollout where it is: no stage, no re-send, no verdict."""
        with self._lock:
            rollout = self._get(rollout_id)
            if rollout.state not in ("canary", "promoting"):
                raise RolloutError(
                    f"rollout {rollout_id} is {rollout.state}: only a running one pauses"
                )
            paused = replace(rollout, state="paused", resume_state=rollout.state)
            self._transition(rollout, paused, actor, reason or "paused by the operator")
        return self.view(rollout.rollout_id)

    def resume(self, rollout_id: str, *, actor: str, reason: str = "") -> RolloutView:
        """Carry a paused rollout on from the state it was paused in."""
        with self._lock:
            rollout = self._get(rollout_id)
            if rollout.state != "paused":
                raise RolloutError(f"rollout {rollout_id} is {rollout.state}, not paused")
            state: RolloutState = "promoting" if rollout.resume_state == "promoting" else "canary"
            resumed = replace(rollout, state=state, resume_state="", stage_started_ms=self._clock())
            self._transition(rollout, resumed, actor, reason or "resumed by the operator")
        return self.view(rollout.rollout_id)

    def rollback(self, rollout_id: str, *, actor: str, reason: str = "") -> RolloutView:
        """Send every device that took the rollout's model its previous version back."""
        with self._lock:
            rollout = self._get(rollout_id)
            if rollout.state not in (*ACTIVE_STATES, "done"):
                raise RolloutError(f"rollout {rollout_id} is {rollout.state}: nothing to roll back")
            self._roll_back(rollout, "rolled_back", actor, reason or "rolled back by the operator")
        return self.view(rollout.rollout_id)

    def view(self, rollout_id: str = "") -> RolloutView:
        """A rollout (the newest when ``rollout_id`` is empty) with devices and events."""
        rollout = self._get(rollout_id)
        return RolloutView(
            rollout,
            self._store.rollout_devices(rollout.rollout_id),
            self._store.rollout_events(rollout.rollout_id),
        )

    # -- what the fleet says -----------------------------------------------------------

    def on_reply(self, topic: str, payload: bytes) -> None:
        """A device's CommandReply on ``reply/model``."""
        parts = topic.split("/")
        device = parts[2] if len(parts) == 5 else ""
        try:
            reply = telemetry_pb2.CommandReply.FromString(payload)
            settings = json.loads(reply.settings_json) if reply.settings_json else {}
        except (DecodeError, ValueError):
            logger.warning("rollout: a reply on %s is not a CommandReply; ignored", topic)
            return
        if not is_identifier(device) or reply.device_id not in ("", device):
            logger.warning("rollout: reply on %s names device %r; ignored", topic, reply.device_id)
            return
        if not isinstance(settings, dict):
            settings = {}
        with self._lock:
            found = self._row_for(device, reply.request_id, str(settings.get("rollout_id", "")))
            if found is None:
                logger.info(
                    "rollout: %s answered %s, which no rollout sent", device, reply.request_id
                )
                return
            row = found
            version = str(settings.get("model_version", "") or row.reported_version)
            updated = _answered(row, reply.ok, reply.error, version, self._clock())
            if updated != row:
                self._store.save_rollout_devices([updated])
        if reply.ok:
            logger.info("rollout: %s runs %s", device, version)
        else:
            logger.warning("rollout: %s refused %s: %s", device, row.want_version, reply.error)

    def tick(self) -> None:
        """One pass: refresh device versions, re-send, move each rollout on."""
        with self._lock:
            now = self._clock()
            for rollout in self._store.rollouts():
                devices = self._store.rollout_devices(rollout.rollout_id)
                if rollout.state not in ACTIVE_STATES and not any(
                    d.state in PENDING for d in devices
                ):
                    continue
                devices = self._refresh(devices, now)
                if rollout.state != "paused":
                    devices = self._resend(rollout, devices, now)
                if rollout.state == "canary":
                    self._advance_canary(rollout, devices, now)
                elif rollout.state == "promoting":
                    self._advance_stage(rollout, devices, now)

    # -- internals ---------------------------------------------------------------------

    def _targets(self, device_ids: Sequence[str], site: str) -> list[str]:
        fleet = dict(self._fleet())
        if device_ids and site:
            raise RequestError("give devices or a site, not both")
        if device_ids:
            unknown = sorted(set(device_ids) - fleet.keys())
            if unknown:
                raise RequestError(f"devices not in the fleet: {', '.join(unknown[:10])}")
            return sorted(set(device_ids))
        if site:
            chosen = sorted(d for d, s in fleet.items() if s == site)
            if not chosen:
                raise RequestError(f"no device of the fleet is at site {site[:100]!r}")
            return chosen
        if not fleet:
            raise RolloutError("the fleet has no devices to roll out to")
        return sorted(fleet)

    def _check_rollback_possible(self, current: Mapping[str, str], target: str) -> None:
        unknown = sorted(d for d, v in current.items() if not v)
        if unknown:
            raise RolloutError(
                f"{len(unknown)} device(s) have not reported their model yet "
                f"({', '.join(unknown[:5])}): a rollback could not send it back; wait for "
                "their health or leave them out with --devices"
            )
        missing = sorted(
            {v for v in current.values() if v != target and self._store.model(v) is None}
        )
        if missing:
            holders = sorted(d for d, v in current.items() if v in missing)
            raise RolloutError(
                f"devices {', '.join(holders[:5])} run model(s) {', '.join(missing)}, not "
                "published: publish them (`models publish`) so a rollback can send them back"
            )

    def _active(self) -> Rollout | None:
        return next((r for r in self._store.rollouts() if r.state in ACTIVE_STATES), None)

    def _get(self, rollout_id: str) -> Rollout:
        """The rollout named, or the newest for an empty id."""
        if not rollout_id:
            newest = next(iter(self._store.rollouts()), None)
            if newest is None:
                raise NotFoundError("no rollout has been started")
            return newest
        rollout = self._store.rollout(rollout_id)
        if rollout is None:
            raise NotFoundError(f"no rollout {rollout_id[:64]!r}")
        return rollout

    def _supersede(self, newer: str, planned: Sequence[RolloutDevice], now: int) -> None:
        """A new rollout decides its devices' model: older rollouts stop re-sending to them."""
        ids = {d.device_id for d in planned}
        for older in self._store.rollouts():
            if older.rollout_id == newer:
                continue
            taken = [
                replace(d, state="superseded", updated_ms=now)
                for d in self._store.rollout_devices(older.rollout_id)
                if d.device_id in ids and d.state in (*PENDING, "waiting")
            ]
            if taken:
                self._store.save_rollout_devices(taken)

    def _row_for(self, device: str, request_id: str, rollout_id: str) -> RolloutDevice | None:
        rollouts = [rollout_id] if rollout_id else [r.rollout_id for r in self._store.rollouts()]
        for candidate in rollouts[:20]:
            for row in self._store.rollout_devices(candidate):
                if row.device_id == device and row.request_id == request_id and request_id:
                    return row
        return None

    def _publish(self, rollout: Rollout, row: RolloutDevice, now: int) -> RolloutDevice:
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

    def _send_stage(
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
            sent.append(self._publish(rollout, wanted, now))
        return sent

    def _refresh(self, devices: list[RolloutDevice], now: int) -> list[RolloutDevice]:
        """Devices whose health shows the wanted version are done, reply or not."""
        changed, out = [], []
        for row in devices:
            seen = row
            if row.state in PENDING and row.sent_ms:
                newest = self._store.device_health(
                    row.device_id, row.sent_ms, EVER, newest_only=True
                )
                version = _health(newest[0]).model_version if newest else ""
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

    def _resend(
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
                again = self._publish(rollout, row, now)
                changed.append(again)
                out.append(again)
            else:
                out.append(row)
        if changed:
            self._store.save_rollout_devices(changed)
        return out

    def _transition(
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

    def _roll_back(self, rollout: Rollout, state: RolloutState, actor: str, reason: str) -> None:
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
                back.append(self._publish(rollout, wanted, now))
        note = f"{reason}; {len(back)} device(s) sent their previous model back"
        self._transition(rollout, replace(rollout, state=state, resume_state=""), actor, note, back)

    def _fail(self, rollout: Rollout, reason: str) -> None:
        self._roll_back(rollout, "failed", CONTROLLER, reason)

    def _faults(self, devices: Sequence[RolloutDevice]) -> str:
        """Why devices refused for model faults, one clause each ('' when none did)."""
        return "; ".join(
            f"{d.device_id}: {d.error}"
            for d in devices
            if d.state == "refused" and is_model_fault(d.error)
        )

    def _too_many_faults(self, devices: Sequence[RolloutDevice]) -> bool:
        sent = [d for d in devices if d.want_version or d.state == "refused"]
        faults = [d for d in sent if d.state == "refused" and is_model_fault(d.error)]
        return (
            bool(faults)
            and len(faults) / max(1, len(sent)) > self._config.thresholds.max_failure_share
        )

    def _advance_canary(self, rollout: Rollout, devices: list[RolloutDevice], now: int) -> None:
        canaries = [d for d in devices if d.stage == 0]
        if self._too_many_faults(canaries):
            self._fail(rollout, f"canary refused the model: {self._faults(canaries)}")
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
                self._fail(
                    rollout,
                    f"no canary device runs {rollout.model_version} after "
                    f"{(now - rollout.stage_started_ms) / 1000:.0f} s",
                )
                return
            evaluation = {"window_start_ms": now, "canaries": applied}
            opened = replace(rollout, evaluation_json=json.dumps(evaluation))
            self._transition(
                rollout,
                opened,
                CONTROLLER,
                f"{len(applied)} canary device(s) run {rollout.model_version}; watching them "
                f"{self._config.window_s:g} s against the control",
            )
            return
        if now < window_start + self._config.window_s * 1000:
            return
        verdict, figures = self._evaluate(rollout, devices, int(window_start))
        evaluation.update(
            verdict="pass" if verdict.ok else "fail",
            canary=verdict.canary,
            control=verdict.control,
            failures=verdict.failures,
            devices=[f.as_json() for f in figures],
        )
        judged = replace(rollout, evaluation_json=json.dumps(evaluation))
        if not verdict.ok:
            self._fail(judged, "canary outside thresholds: " + "; ".join(verdict.failures))
            return
        self._promote(judged, devices, 1, now, "canary within thresholds: " + _summary(verdict))

    def _advance_stage(self, rollout: Rollout, devices: list[RolloutDevice], now: int) -> None:
        sent = [d for d in devices if 0 < d.stage <= rollout.stage]
        if self._too_many_faults(sent):
            self._fail(rollout, f"stage {rollout.stage} refused the model: {self._faults(sent)}")
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
            self._promote(
                rollout, devices, rollout.stage + 1, now, f"stage {rollout.stage} answered"
            )
            return
        counts = {s: sum(d.state == s for d in devices) for s in ("applied", "refused", "sent")}
        self._transition(
            rollout,
            replace(rollout, state="done"),
            CONTROLLER,
            f"every stage sent: {counts['applied']} of {len(devices)} devices run "
            f"{rollout.model_version}, {counts['refused']} refused, {counts['sent']} pending "
            "(they get it when they are back)",
        )

    def _promote(
        self, rollout: Rollout, devices: list[RolloutDevice], stage: int, now: int, reason: str
    ) -> None:
        sent = self._send_stage(rollout, devices, stage, now)
        promoted = replace(rollout, state="promoting", stage=stage, stage_started_ms=now)
        percent = self._config.stages_percent[stage - 1]
        self._transition(
            rollout,
            promoted,
            CONTROLLER,
            f"{reason}; stage {stage} ({percent:g}% of the rest): {len(sent)} device(s) sent",
            sent,
        )

    def _evaluate(
        self, rollout: Rollout, devices: Sequence[RolloutDevice], window_start: int
    ) -> tuple[Verdict, list[DeviceFigures]]:
        config = self._config
        window_end = window_start + int(config.window_s * 1000)
        history_from = rollout.created_ms - int(config.history_s * 1000)
        canary, control, baseline = [], [], []

        def figures(device: str) -> DeviceFigures:
            return device_figures(
                device,
                health=self._store.device_health(device, window_start, window_end),
                levels=self._store.device_levels(device, window_start, window_end),
                history_levels=self._store.device_levels(device, history_from, rollout.created_ms),
                window_s=config.window_s,
                min_reports=config.min_reports,
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


def _answered(row: RolloutDevice, ok: bool, error: str, version: str, now: int) -> RolloutDevice:
    """A device row after the device's reply."""
    if row.state not in PENDING:
        return row
    if ok:
        if version != row.want_version:
            return replace(row, reported_version=version, updated_ms=now)
        done: DeviceState = "applied" if row.state == "sent" else "rolled_back"
        return replace(row, state=done, reported_version=version, error="", updated_ms=now)
    error = error[:500] or "refused without a reason"
    if error.startswith(SUPERSEDED):  # a later command to it is the one that counts
        return row
    if error.startswith(RETRIED):  # keep it pending: the re-send tries again
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
    ):
        parts.append(f"{label} {_fmt(a[key])} vs {_fmt(b[key])}")
    return ", ".join(parts)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def view_json(view: RolloutView) -> dict[str, object]:
    """A rollout, its devices and its events as plain JSON (``status --json``, dashboard)."""
    rollout = dataclasses.asdict(view.rollout)
    rollout["evaluation"] = json.loads(rollout.pop("evaluation_json") or "{}")
    return {
        **rollout,
        "devices": [dataclasses.asdict(d) for d in view.devices],
        "events": [dataclasses.asdict(e) for e in view.events],
    }
