"""FleetService's rollout RPCs: requests to controller calls, views to RolloutStatus."""

from __future__ import annotations

from typing import Literal

import grpc

from roadsense.cloud.api.auth import AuthConfig, token_holder
from roadsense.cloud.rollout.controller import RolloutController, RolloutView
from roadsense.core.errors import NotConfiguredError, RequestError
from roadsense.proto.v1 import fleet_pb2

MAX_REASON_CHARS = 200


def caller_name(context: grpc.ServicerContext, auth: AuthConfig) -> str:
    """Who calls, for the record: the token holder's name ('anonymous' on an open API)."""
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
            holder = token_holder(auth, value[len("Bearer ") :])
            if holder is not None:
                return holder.name
    return "anonymous"


def reason_of(request: fleet_pb2.RolloutActionRequest) -> str:
    """The operator's reason, checked."""
    if len(request.reason) > MAX_REASON_CHARS or not request.reason.isprintable():
        raise RequestError(
            f"reason must be printable text of at most {MAX_REASON_CHARS} characters"
        )
    return request.reason


def controller(rollouts: RolloutController | None) -> RolloutController:
    """The controller, or the reason there is none."""
    if rollouts is None:
        raise NotConfiguredError(
            "rollouts are off on this cloud ([rollout] enabled = false, or the controller "
            "has no broker account of its own: see [rollout] cert_file)"
        )
    return rollouts


def act(
    rollouts: RolloutController,
    action: Literal["pause", "resume", "rollback"],
    request: fleet_pb2.RolloutActionRequest,
    actor: str,
) -> RolloutView:
    """Pause, resume or roll back the rollout a request names (the newest: empty id)."""
    reason = reason_of(request)
    method = {"pause": rollouts.pause, "resume": rollouts.resume, "rollback": rollouts.rollback}
    return method[action](request.rollout_id, actor=actor, reason=reason)


def start(
    rollouts: RolloutController, request: fleet_pb2.StartRolloutRequest, actor: str
) -> RolloutView:
    """StartRollout's request as a controller call."""
    percent = request.canary_percent or None
    count = request.canary_devices or None
    return rollouts.begin(
        request.model_version,
        actor=actor,
        canary_percent=percent,
        canary_devices=count,
        device_ids=list(request.device_ids),
        site=request.site,
    )


def status_message(view: RolloutView) -> fleet_pb2.RolloutStatus:
    """A rollout view as its wire message."""
    r = view.rollout
    return fleet_pb2.RolloutStatus(
        rollout_id=r.rollout_id,
        model_version=r.model_version,
        state=r.state,
        reason=r.reason,
        canary_percent=r.canary_percent,
        stage=r.stage,
        created_ms=r.created_ms,
        created_by=r.created_by,
        updated_ms=r.updated_ms,
        evaluation_json=r.evaluation_json,
        devices=[
            fleet_pb2.RolloutDevice(
                device_id=d.device_id,
                stage=d.stage,
                previous_version=d.previous_version,
                want_version=d.want_version,
                reported_version=d.reported_version,
                state=d.state,
                error=d.error,
                sent_ms=d.sent_ms,
                attempts=d.attempts,
                updated_ms=d.updated_ms,
            )
            for d in view.devices
        ],
        events=[
            fleet_pb2.RolloutTransition(
                time_ms=e.time_ms,
                actor=e.actor,
                from_state=e.from_state,
                to_state=e.to_state,
                reason=e.reason,
            )
            for e in view.events
        ],
    )
