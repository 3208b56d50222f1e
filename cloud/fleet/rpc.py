"""roadsense.v1.FleetService: the device registry, enrollment by claim, revocation.

Translation only: the logic lives in ``roadsense.cloud.fleet.enrollment``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Literal

import grpc

from roadsense.cloud.api.auth import AuthConfig, has_bearer_token, peer_common_name
from roadsense.cloud.api.status import streaming, unary
from roadsense.cloud.config import ModelRegistryConfig
from roadsense.cloud.domain import DeviceRecord, RegistryEntry
from roadsense.cloud.fleet.enrollment import FleetIdentity, revoke_in_registry
from roadsense.cloud.releases.delivery import Caller, authorize_download, release_chunks
from roadsense.cloud.rollout import rpc as rollout_rpc
from roadsense.cloud.rollout.controller import RolloutController
from roadsense.cloud.store.interface import Store
from roadsense.core.errors import NotConfiguredError, NotFoundError, RequestError
from roadsense.core.timeutil import now_ms
from roadsense.proto.topics import is_identifier
from roadsense.proto.v1 import fleet_pb2, fleet_pb2_grpc

logger = logging.getLogger(__name__)

MAX_REVOKE_REASON_CHARS = 200


def device_message(
    device_id: str, seen: DeviceRecord | None, entry: RegistryEntry | None
) -> fleet_pb2.Device:
    """One device as telemetry and the identity registry know it."""
    message = fleet_pb2.Device(device_id=device_id)
    if seen is not None:
        message.online = seen.online
        message.last_seen_ms = seen.last_seen_ms
        message.agent_version = seen.agent_version
        message.model_version = seen.model_version
        message.camera_ids.extend(seen.camera_ids)
    if entry is not None:
        message.enrolled = entry.enrolled_ms > 0 and entry.revoked_ms is None
        message.enrolled_ms = entry.enrolled_ms
        message.revoked = entry.revoked_ms is not None
        message.revoked_ms = entry.revoked_ms or 0
        message.certificate_serial = entry.certificate_serial
        message.revoke_reason = entry.revoke_reason
    return message


class FleetServicer(fleet_pb2_grpc.FleetServiceServicer):
    """roadsense.v1.FleetService."""

    def __init__(
        self,
        store: Store,
        identity: FleetIdentity | None = None,
        fleet_devices: frozenset[str] = frozenset(),
        models: ModelRegistryConfig | None = None,
        open_api: bool = True,
        *,
        rollouts: RolloutController | None = None,
        auth: AuthConfig | None = None,
    ) -> None:
        self._rollouts = rollouts
        self._auth = auth or AuthConfig()
        self._store = store
        self._identity = identity
        self._fleet_devices = fleet_devices
        self._models = models or ModelRegistryConfig()
        self._open_api = open_api

    def _devices(self) -> dict[str, fleet_pb2.Device]:
        seen = {d.device_id: d for d in self._store.devices()}
        registry = self._store.registry()
        return {
            device_id: device_message(device_id, seen.get(device_id), registry.get(device_id))
            for device_id in sorted(seen.keys() | registry.keys())
        }

    @unary
    def ListDevices(  # noqa: N802 - gRPC method name
        self, request: fleet_pb2.ListDevicesRequest, context: grpc.ServicerContext
    ) -> fleet_pb2.ListDevicesResponse:
        return fleet_pb2.ListDevicesResponse(devices=list(self._devices().values()))

    @unary
    def GetDevice(  # noqa: N802 - gRPC method name
        self, request: fleet_pb2.GetDeviceRequest, context: grpc.ServicerContext
    ) -> fleet_pb2.Device:
        device = self._devices().get(request.device_id)
        if device is None:
            raise NotFoundError(f"no device {request.device_id[:100]!r}")
        return device

    @unary
    def Enroll(  # noqa: N802 - gRPC method name
        self, request: fleet_pb2.EnrollRequest, context: grpc.ServicerContext
    ) -> fleet_pb2.EnrollResponse:
        if self._identity is None:
            raise NotConfiguredError("enrollment is not configured on this cloud")
        enrolled = self._identity.enroll(request.token, request.csr_pem, now_ms())
        return fleet_pb2.EnrollResponse(
            device_id=enrolled.device_id,
            certificate_pem=enrolled.certificate_pem,
            ca_pem=enrolled.ca_pem,
            edge_config_toml=enrolled.edge_config_toml,
            model_signing_key_pem=enrolled.model_signing_key_pem,
        )

    @unary
    def RevokeDevice(  # noqa: N802 - gRPC method name
        self, request: fleet_pb2.RevokeDeviceRequest, context: grpc.ServicerContext
    ) -> fleet_pb2.RevokeDeviceResponse:
        device_id, reason = request.device_id, request.reason
        if not is_identifier(device_id):
            raise RequestError("device_id is not a valid id")
        if len(reason) > MAX_REVOKE_REASON_CHARS or not reason.isprintable():
            raise RequestError(
                f"reason must be printable text of at most {MAX_REVOKE_REASON_CHARS} characters"
            )
        serials: list[str] = []
        known = device_id in self._fleet_devices
        if self._identity is not None:
            entry, serials = self._identity.revoke(device_id, reason, now_ms(), known=known)
        else:
            entry = revoke_in_registry(self._store, device_id, reason, now_ms(), known=known)
            logger.warning(
                "revoked %s in the registry only: no enrollment (CA) configured for the CRL",
                device_id,
            )
        seen = {d.device_id: d for d in self._store.devices()}.get(device_id)
        return fleet_pb2.RevokeDeviceResponse(
            device=device_message(device_id, seen, entry), revoked_serials=serials
        )

    @streaming
    def DownloadModel(  # noqa: N802 - gRPC method name
        self, request: fleet_pb2.DownloadModelRequest, context: grpc.ServicerContext
    ) -> Iterator[fleet_pb2.ModelChunk]:
        caller = Caller(peer_common_name(context), has_bearer_token(context))
        who = authorize_download(
            self._store, caller, fleet_devices=self._fleet_devices, open_api=self._open_api
        )
        card = request.part == fleet_pb2.MODEL_PART_CARD
        logger.info(
            "%s downloads the %s of model %s from byte %d",
            who,
            "card" if card else "ONNX",
            request.version[:64],
            request.offset,
        )
        for chunk in release_chunks(
            self._store,
            self._models.registry_dir,
            request.version,
            card=card,
            offset=request.offset,
            chunk_bytes=self._models.chunk_bytes,
        ):
            yield fleet_pb2.ModelChunk(
                offset=chunk.offset, data=chunk.data, total_size=chunk.total_size
            )

    @unary
    def StartRollout(  # noqa: N802 - gRPC method name
        self, request: fleet_pb2.StartRolloutRequest, context: grpc.ServicerContext
    ) -> fleet_pb2.RolloutStatus:
        rollouts = rollout_rpc.controller(self._rollouts)
        actor = rollout_rpc.caller_name(context, self._auth)
        return rollout_rpc.status_message(rollout_rpc.start(rollouts, request, actor))

    @unary
    def GetRollout(  # noqa: N802 - gRPC method name
        self, request: fleet_pb2.GetRolloutRequest, context: grpc.ServicerContext
    ) -> fleet_pb2.RolloutStatus:
        rollouts = rollout_rpc.controller(self._rollouts)
        return rollout_rpc.status_message(rollouts.view(request.rollout_id))

    def _act(
        self,
        action: Literal["pause", "resume", "rollback"],
        request: fleet_pb2.RolloutActionRequest,
        context: grpc.ServicerContext,
    ) -> fleet_pb2.RolloutStatus:
        rollouts = rollout_rpc.controller(self._rollouts)
        actor = rollout_rpc.caller_name(context, self._auth)
        return rollout_rpc.status_message(rollout_rpc.act(rollouts, action, request, actor))

    @unary
    def PauseRollout(  # noqa: N802 - gRPC method name
        self, request: fleet_pb2.RolloutActionRequest, context: grpc.ServicerContext
    ) -> fleet_pb2.RolloutStatus:
        return self._act("pause", request, context)

    @unary
    def ResumeRollout(  # noqa: N802 - gRPC method name
        self, request: fleet_pb2.RolloutActionRequest, context: grpc.ServicerContext
    ) -> fleet_pb2.RolloutStatus:
        return self._act("resume", request, context)

    @unary
    def RollbackRollout(  # noqa: N802 - gRPC method name
        self, request: fleet_pb2.RolloutActionRequest, context: grpc.ServicerContext
    ) -> fleet_pb2.RolloutStatus:
        return self._act("rollback", request, context)
