"""A cloud with the rollout controller, published releases and simulated devices."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from roadsense.cloud.app import CloudService
from roadsense.cloud.config import CloudConfig, ModelRegistryConfig
from roadsense.cloud.releases.registry import publish_model
from roadsense.cloud.rollout.config import RolloutConfig
from roadsense.harness.sim_fleet import Behaviour, SimulatedDevice
from roadsense.proto.v1 import fleet_pb2, fleet_pb2_grpc
from roadsense.provisioning.model_key import create_model_key, open_model_key

from .helpers import running_cloud, wait_until
from .model_releases import write_release

PASSPHRASE = b"fleet passphrase for tests"
RELEASE_BYTES = 200_000
HISTORY_REPORTS = 40
"""Reports of each device before a rollout: enough for its level distribution."""
FAST = RolloutConfig(
    tick_s=0.2,
    window_s=3.0,
    apply_timeout_s=15.0,
    resend_s=1.0,
    history_s=120.0,
    min_reports=20,
)
"""Seconds instead of minutes: the same controller, a short canary window."""


@dataclass
class RolloutFleet:
    """A running cloud, its registry and the simulated devices."""

    cloud: CloudService
    public_key: bytes
    workdir: Path
    behaviours: dict[str, Behaviour]
    devices: list[SimulatedDevice] = field(default_factory=list)
    token: str = ""

    @property
    def stub(self) -> fleet_pb2_grpc.FleetServiceStub:
        return fleet_pb2_grpc.FleetServiceStub(self._channel)

    def metadata(self, token: str | None = None) -> tuple[tuple[str, str], ...]:
        token = self.token if token is None else token
        return (("authorization", f"Bearer {token}"),) if token else ()

    def start_devices(
        self, count: int, version: str = "1.0", *, detector: str = "", **kwargs: object
    ) -> None:
        """``count`` devices on classifier ``version`` (measuring with ``detector``, if any)."""
        for i in range(count):
            name = self.device_name(len(self.devices) + 1)
            device = self.device(name, version, seed=i, detector=detector)
            device.start(**kwargs)  # type: ignore[arg-type]
        self.wait_for_health([d.device_id for d in self.devices])

    device_ids: set[str] = field(default_factory=set)

    def device_name(self, number: int) -> str:
        """Device ``number``'s id, unique to this test: the broker keeps sessions by id."""
        name = f"{self.cloud.config.ingest.client_id}-dev-{number}"
        self.device_ids.add(name)
        return name

    def device(
        self, device_id: str, version: str = "1.0", seed: int = 0, detector: str = ""
    ) -> SimulatedDevice:
        device = SimulatedDevice(
            device_id,
            self.cloud.config.mqtt,
            grpc_address=self.cloud.address,
            public_key=self.public_key,
            folder=self.workdir / "devices",
            model_version=version,
            behaviours=self.behaviours,
            frame_hz=20.0,
            frames_per_report=1,
            health_s=0.5,
            seed=seed,
            download_token=self.token,
            detector_version=detector,
        )
        self.devices.append(device)
        return device

    def wait_for_health(self, device_ids: Sequence[str], reports: int = HISTORY_REPORTS) -> None:
        """Until each device's health and ``reports`` reports are stored (its history)."""
        store = self.cloud.store
        assert wait_until(
            lambda: all(
                store.device_health(d, 0, 2**62, newest_only=True)
                and len(store.device_levels(d, 0, 2**62)) >= reports
                for d in device_ids
            )
        ), "devices did not report their health and history"

    def start(self, device_ids: Sequence[str] = (), **request: object) -> fleet_pb2.RolloutStatus:
        """StartRollout to ``device_ids`` (default: this test's devices; the shared broker
        holds retained statuses of other tests' devices, which the cloud counts too)."""
        ids = list(device_ids) or sorted(self.device_ids)
        message = fleet_pb2.StartRolloutRequest(device_ids=ids, **request)  # type: ignore[arg-type]
        status: fleet_pb2.RolloutStatus = self.stub.StartRollout(
            message, timeout=10, metadata=self.metadata()
        )
        return status

    def status(self, rollout_id: str = "") -> fleet_pb2.RolloutStatus:
        request = fleet_pb2.GetRolloutRequest(rollout_id=rollout_id)
        status: fleet_pb2.RolloutStatus = self.stub.GetRollout(
            request, timeout=10, metadata=self.metadata()
        )
        return status

    def wait_for_state(self, state: str, timeout_s: float = 60.0) -> fleet_pb2.RolloutStatus:
        assert wait_until(lambda: self.status().state == state, timeout_s), self.status()
        return self.status()

    def versions(self) -> dict[str, str]:
        return {d.device_id: d.version for d in self.devices}

    def detectors(self) -> dict[str, str]:
        return {d.device_id: d.detector for d in self.devices}

    _channel: grpc.Channel = field(init=False, repr=False)


def publish(
    cloud: CloudService,
    workdir: Path,
    key_dir: Path,
    versions: Sequence[str],
    files: Mapping[str, Path],
) -> None:
    """Publish random-byte releases of ``versions`` and the ONNX ``files`` (version → file,
    its card beside it), signed by the fleet key."""
    key = open_model_key(key_dir, PASSPHRASE)
    releases = {v: write_release(workdir / "export" / v, v, size=RELEASE_BYTES) for v in versions}
    for version, onnx in {**releases, **files}.items():
        publish_model(
            cloud.store,
            cloud.config.models.registry_dir,
            onnx,
            version,
            key,
            now_ms=1,
            published_by="test",
        )


@contextlib.contextmanager
def rollout_fleet(
    cloud_config: CloudConfig,
    workdir: Path,
    *,
    versions: Sequence[str] = ("1.0", "2.0"),
    behaviours: dict[str, Behaviour] | None = None,
    rollout: RolloutConfig = FAST,
    token: str = "",
    files: Mapping[str, Path] | None = None,
) -> Iterator[RolloutFleet]:
    """A cloud with ``rollout`` settings, ``versions`` (random bytes) and ``files`` (real
    ONNX) published, no devices yet."""
    key_dir = workdir / "fleet"
    public_key = create_model_key(key_dir, PASSPHRASE).read_bytes()
    config = cloud_config.model_copy(
        update={
            "rollout": rollout,
            "models": ModelRegistryConfig(registry_dir=workdir / "registry"),
            "forecast": cloud_config.forecast.model_copy(update={"enabled": False}),
        }
    )
    with running_cloud(config) as cloud:
        publish(cloud, workdir, key_dir, versions, files or {})
        fleet = RolloutFleet(cloud, public_key, workdir, behaviours or {}, token=token)
        with grpc.insecure_channel(cloud.address) as channel:
            fleet._channel = channel
            try:
                yield fleet
            finally:
                for device in fleet.devices:
                    device.stop()
