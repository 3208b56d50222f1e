"""The rollout controller: canary, verdict, promotion in stages, automatic rollback.

A rollout is rows in the store (``roadsense.cloud.rollout.records``), so a restarted cloud
carries on where it stopped. Each tick the controller reads what the fleet reported
(health and replies on ``reply/model``), re-sends the ModelUpdate to devices that do not
show the wanted version yet (an offline device gets it when it is back), and moves the
rollout on: canary devices first; after the window the canary's figures against the
control's (``roadsense.cloud.rollout.verdict``); within thresholds the stages follow, out
of them the canaries get their previous version back and the rollout is marked failed
with the measured reason. Every transition is an event: who, when, from, to, why.

A rollout replaces the devices' model of its release's kind, the congestion classifier or
the vehicle detector (``roadsense.cloud.rollout.kinds``): the ModelUpdate names the kind,
and which version a device runs, what a rollback sends back and when it applied are read
of that model.

A device that refuses a model keeps the one it runs (the agent's contract), so a rollback
only has to send the previous version of devices that took the new one; a device that
holds a version applies it without downloading it again.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from google.protobuf.message import DecodeError

from roadsense.cloud.leader import LeaderLock, Leadership
from roadsense.cloud.rollout.config import RolloutConfig
from roadsense.cloud.rollout.kinds import release_kind, running_version
from roadsense.cloud.rollout.plan import canary_size, plan_devices
from roadsense.cloud.rollout.records import (
    ACTIVE_STATES,
    Rollout,
    RolloutDevice,
    RolloutEvent,
    RolloutState,
)
from roadsense.cloud.rollout.rows import RolloutStore
from roadsense.cloud.rollout.steps import EVER, PENDING, RolloutSteps, answered
from roadsense.cloud.rollout.verdict import parse_health as _health
from roadsense.core.errors import NotFoundError, RequestError, RoadSenseError, RolloutError
from roadsense.core.publisher import Publisher
from roadsense.core.timeutil import now_ms
from roadsense.models.signing import is_model_version
from roadsense.proto.model_kinds import CONGESTION
from roadsense.proto.topics import parse_reply_topic, reply_filter
from roadsense.proto.v1 import telemetry_pb2

logger = logging.getLogger(__name__)

REPLY_FILTER = reply_filter("model")


@dataclass(frozen=True)
class RolloutView:
    """A rollout with its devices and its recorded transitions."""

    rollout: Rollout
    devices: list[RolloutDevice]
    events: list[RolloutEvent]


def current_versions(
    store: RolloutStore, devices: Iterable[str], kind: str = CONGESTION
) -> dict[str, str]:
    """The ``kind`` model each device last said it runs ('': not known): from health, and
    for the classifier else from its birth message (which names no detector)."""
    born = {d.device_id: d.model_version for d in store.devices()} if kind == CONGESTION else {}
    versions = {}
    for device in devices:
        newest = store.device_health(device, 0, EVER, newest_only=True)
        version = running_version(_health(newest[0]), kind) if newest else ""
        versions[device] = version or born.get(device, "")
    return versions


class RolloutController:
    """Runs rollouts from the cloud process; one active rollout at a time."""

    def __init__(
        self,
        store: RolloutStore,
        config: RolloutConfig,
        commands: Publisher,
        fleet: Callable[[], Mapping[str, str]],
        *,
        clock: Callable[[], int] = now_ms,
        leader: LeaderLock | None = None,
    ) -> None:
        """``fleet`` gives the devices a rollout may reach, each with its site (''). With
        ``leader``, only the process holding that lock ticks (verdicts, stages, re-sends);
        every one answers the operator's RPCs and records device replies."""
        self._store = store
        self._config = config
        self._commands = commands
        self._fleet = fleet
        self._clock = clock
        self._leadership = Leadership(leader, "rollout controller")
        self._steps = RolloutSteps(store, config, commands, clock)
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
        """Stop ticking, let the lock go and disconnect."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10.0)
        self._leadership.release()
        self._commands.stop()

    @property
    def leading(self) -> bool:
        """Whether this process moved rollouts on at its last tick."""
        return self._leadership.leading

    def _run(self) -> None:
        while not self._stop.wait(self._config.tick_s):
            try:
                if self._leadership.take():
                    self.tick()
            except (RoadSenseError, sqlite3.Error) as err:  # store away, a race: next tick
                logger.warning("rollout controller: tick failed: %s", err)
            except Exception:  # a bug: loud, but the controller keeps running
                logger.exception("rollout controller: tick failed")

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
        current = current_versions(self._store, targets, model.kind)
        self._check_rollback_possible(current, model_version, model.kind)
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
        if model.kind != CONGESTION:  # the classifier's rollouts read as they always did
            reason = f"{model.kind} rollout: {reason}"
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
            self._supersede(rollout_id, model.kind, planned, now)
            sent = self._steps.send_stage(rollout, self._store.rollout_devices(rollout_id), 0, now)
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
            self._steps.transition(rollout, paused, actor, reason or "paused by the operator")
        return self.view(rollout.rollout_id)

    def resume(self, rollout_id: str, *, actor: str, reason: str = "") -> RolloutView:
        """Carry a paused rollout on from the state it was paused in."""
        with self._lock:
            rollout = self._get(rollout_id)
            if rollout.state != "paused":
                raise RolloutError(f"rollout {rollout_id} is {rollout.state}, not paused")
            state: RolloutState = "promoting" if rollout.resume_state == "promoting" else "canary"
            resumed = replace(rollout, state=state, resume_state="", stage_started_ms=self._clock())
            self._steps.transition(rollout, resumed, actor, reason or "resumed by the operator")
        return self.view(rollout.rollout_id)

    def rollback(self, rollout_id: str, *, actor: str, reason: str = "") -> RolloutView:
        """Send every device that took the rollout's model its previous version back."""
        with self._lock:
            rollout = self._get(rollout_id)
            if rollout.state not in (*ACTIVE_STATES, "done"):
                raise RolloutError(f"rollout {rollout_id} is {rollout.state}: nothing to roll back")
            self._steps.roll_back(
                rollout, "rolled_back", actor, reason or "rolled back by the operator"
            )
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
        parsed = parse_reply_topic(topic)
        device = parsed.device_id if parsed is not None and parsed.name == "model" else ""
        try:
            reply = telemetry_pb2.CommandReply.FromString(payload)
            settings = json.loads(reply.settings_json) if reply.settings_json else {}
        except (DecodeError, ValueError):
            logger.warning("rollout: a reply on %s is not a CommandReply; ignored", topic)
            return
        if not device or reply.device_id not in ("", device):
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
            updated = answered(row, reply.ok, reply.error, version, self._clock())
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
                devices = self._steps.refresh(rollout, devices, now)
                if rollout.state != "paused":
                    devices = self._steps.resend(rollout, devices, now)
                if rollout.state == "canary":
                    self._steps.advance_canary(rollout, devices, now)
                elif rollout.state == "promoting":
                    self._steps.advance_stage(rollout, devices, now)

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

    def _check_rollback_possible(self, current: Mapping[str, str], target: str, kind: str) -> None:
        what = "model" if kind == CONGESTION else f"{kind} model"
        unknown = sorted(d for d, v in current.items() if not v)
        if unknown:
            raise RolloutError(
                f"{len(unknown)} device(s) have not reported their {what} yet "
                f"({', '.join(unknown[:5])}): a rollback could not send it back; wait for "
                "their health or leave them out with --devices"
            )
        missing = sorted(
            {v for v in current.values() if v != target and self._store.model(v) is None}
        )
        if missing:
            holders = sorted(d for d, v in current.items() if v in missing)
            raise RolloutError(
                f"devices {', '.join(holders[:5])} run {what}(s) {', '.join(missing)}, not "
                "published: publish them (`models publish`) so a rollback can send them back"
            )
        # A rollback sends the previous version as the rollout's kind: it must be one.
        other = sorted(
            {v for v in current.values() if v != target and release_kind(self._store, v) != kind}
        )
        if other:
            raise RolloutError(
                f"model(s) {', '.join(other)} that devices run as their {what} are published "
                f"as {', '.join(sorted({release_kind(self._store, v) for v in other}))}, not "
                f"{kind}: a rollback could not send them back"
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

    def _supersede(self, newer: str, kind: str, planned: Sequence[RolloutDevice], now: int) -> None:
        """A new rollout decides its devices' model of its kind: older rollouts of that kind
        stop re-sending to them (those of the other model carry on)."""
        ids = {d.device_id for d in planned}
        for older in self._store.rollouts():
            if older.rollout_id == newer or release_kind(self._store, older.model_version) != kind:
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
