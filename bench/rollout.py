"""`roadsense bench rollout`: a canary and one promotion stage to N simulated devices.

A private Mosquitto, the real cloud (ingest, store, rollout controller, gRPC
DownloadModel) and ``devices`` simulated devices (``roadsense.harness.sim_fleet``) that
report at ``report_hz`` and download over the real gRPC stream, all on loopback. A new
random-byte release of ``model_mb`` is published and signed; the clock runs from
StartRollout until every device runs it. Figures:

- ``time_to_all_s``: StartRollout → the last device on the new model; it holds the
  canary window (``window_s``), so ``beyond_window_s`` is the rest: delivery, download,
  swap, verdict ticks and the promotion stage.
- ``single_download_s``: the baseline, one device alone fetching the same release over the
  same server in the same run; ``beyond_window_ratio`` = beyond_window_s / that.
- ``bytes_per_device_*``: bytes each device received for the model (≈ its size: nothing
  fetched twice), and ``bytes_ratio`` = mean / model size.
- ``frames_lost`` / ``reports_lost``: frames whose slot passed unprocessed during the swap
  and reports created but not stored by the cloud (goal 0).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

from roadsense.cloud.app import CloudService
from roadsense.cloud.config import (
    CloudConfig,
    ForecastConfig,
    GrpcConfig,
    IngestConfig,
    ModelRegistryConfig,
    StoreConfig,
)
from roadsense.cloud.releases.registry import publish_model
from roadsense.cloud.rollout.config import RolloutConfig
from roadsense.core.errors import RoadSenseError
from roadsense.core.mqtt import MqttConfig
from roadsense.edge.updates.download import ModelOffer, download_model
from roadsense.harness.broker import start_mosquitto
from roadsense.harness.sim_fleet import SimulatedDevice, write_release
from roadsense.proto.v1 import fleet_pb2, fleet_pb2_grpc
from roadsense.provisioning.model_key import create_model_key, open_model_key

PASSPHRASE = b"bench passphrase"
OLD, NEW = "bench-1.0", "bench-2.0"
EVER = 2**62


def _wait(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise RoadSenseError(f"bench rollout: {what} within {timeout_s:.0f} s")
        time.sleep(0.05)


def _cloud(workdir: Path, mqtt: MqttConfig, window_s: float, min_reports: int) -> CloudService:
    return CloudService(
        CloudConfig(
            mqtt=mqtt,
            ingest=IngestConfig(client_id="bench-rollout-cloud"),
            grpc=GrpcConfig(host="127.0.0.1", port=0, max_workers=64, grace_s=1.0),
            store=StoreConfig(path=workdir / "city.sqlite"),
            forecast=ForecastConfig(enabled=False),
            models=ModelRegistryConfig(registry_dir=workdir / "registry"),
            rollout=RolloutConfig(
                tick_s=0.2,
                window_s=window_s,
                apply_timeout_s=120.0,
                resend_s=30.0,
                history_s=600.0,
                min_reports=min_reports,
                stages_percent=[100.0],
            ),
        )
    )


def _single_download(cloud: CloudService, workdir: Path, public_key: bytes) -> float:
    model = cloud.store.model(NEW)
    assert model is not None
    offer = ModelOffer(model.version, model.size, model.sha256, model.card_sha256, model.signature)
    started = time.perf_counter()
    with grpc.insecure_channel(cloud.address) as channel:
        download_model(channel, offer, public_key, workdir / "baseline")
    return time.perf_counter() - started


def run_rollout_bench(
    *,
    devices: int = 50,
    model_mb: float = 6.0,
    canary_percent: float = 10.0,
    window_s: float = 5.0,
    report_hz: float = 5.0,
) -> dict[str, Any]:
    """One rollout of a ``model_mb`` release to ``devices`` simulated devices."""
    if devices < 2 or model_mb <= 0 or not 0 < canary_percent < 100 or window_s <= 0:
        raise RoadSenseError(
            "bench rollout: give at least 2 devices, a positive model size and window, and "
            "a canary between 0 and 100 percent"
        )
    size = int(model_mb * 1_000_000)
    history = max(5, int(report_hz * 2))
    with tempfile.TemporaryDirectory(prefix="roadsense-bench-rollout-") as tmp:
        workdir = Path(tmp)
        broker = start_mosquitto(workdir / "broker")
        mqtt = MqttConfig(host=broker.host, port=broker.port, session_expiry_s=300)
        cloud = _cloud(workdir, mqtt, window_s, history)
        fleet: list[SimulatedDevice] = []
        cloud.start()
        try:
            figures = _measure(
                cloud, workdir, fleet, devices=devices, size=size,
                canary_percent=canary_percent, report_hz=report_hz,
            )  # fmt: skip
        finally:
            for device in fleet:
                device.stop()
            created = {d.device_id: d.counters.reports_created for d in fleet}
            deadline = time.monotonic() + 30.0
            while time.monotonic() < deadline:  # what the broker still holds gets stored
                stored = sum(1 for k in cloud.store.report_keys() if k[0] in created)
                if stored >= sum(created.values()):
                    break
                time.sleep(0.2)
            cloud.stop()
            broker.stop()
    received = [d.counters.bytes_downloaded for d in fleet]
    time_to_all, single_s = figures["time_to_all_s"], figures["single_download_s"]
    beyond = time_to_all - window_s
    return {
        "devices": devices,
        "canary_devices": figures["canary_devices"],
        "promotion_stages": 1,
        "model_bytes": size,
        "window_s": window_s,
        "time_to_all_s": round(time_to_all, 2),
        "beyond_window_s": round(beyond, 2),
        "single_download_s": round(single_s, 3),
        "beyond_window_ratio": round(beyond / single_s, 1) if single_s else None,
        "bytes_per_device_mean": round(statistics.fmean(received)),
        "bytes_per_device_max": max(received),
        "bytes_ratio": round(statistics.fmean(received) / size, 4),
        "swaps": sum(d.counters.swaps for d in fleet),
        "frames": sum(d.counters.frames for d in fleet),
        "frames_lost": sum(d.counters.frames_lost for d in fleet),
        "reports_created": sum(created.values()),
        "reports_lost": sum(created.values()) - stored,  # created but never stored
        "rollout_state": figures["rollout_state"],
        "transitions": figures["transitions"],
    }


def _measure(
    cloud: CloudService,
    workdir: Path,
    fleet: list[SimulatedDevice],
    *,
    devices: int,
    size: int,
    canary_percent: float,
    report_hz: float,
) -> dict[str, Any]:
    """Publish, start the devices (into ``fleet``), time the rollout."""
    mqtt = cloud.config.mqtt
    history = cloud.config.rollout.min_reports
    public_key = create_model_key(workdir / "fleet", PASSPHRASE).read_bytes()
    key = open_model_key(workdir / "fleet", PASSPHRASE)
    for version, nbytes in ((OLD, 100_000), (NEW, size)):
        onnx = write_release(workdir / "export" / version, version, size=nbytes)
        publish_model(
            cloud.store, workdir / "registry", onnx, version, key, now_ms=1, published_by="bench"
        )
    for i in range(devices):
        device = SimulatedDevice(
            f"bench-dev-{i:03d}", mqtt, grpc_address=cloud.address, public_key=public_key,
            folder=workdir / "devices", model_version=OLD, behaviours={}, frame_hz=report_hz,
            frames_per_report=1, health_s=1.0, seed=i,
        )  # fmt: skip
        device.start()
        fleet.append(device)
    _wait(
        lambda: all(
            len(cloud.store.device_levels(d.device_id, 0, EVER)) >= history
            and cloud.store.device_health(d.device_id, 0, EVER, newest_only=True)
            for d in fleet
        ),
        60.0,
        "devices did not report their history",
    )
    single_s = _single_download(cloud, workdir, public_key)
    request = fleet_pb2.StartRolloutRequest(
        model_version=NEW, canary_percent=canary_percent, device_ids=[d.device_id for d in fleet]
    )
    with grpc.insecure_channel(cloud.address) as channel:
        started = time.perf_counter()
        status = fleet_pb2_grpc.FleetServiceStub(channel).StartRollout(request, timeout=30)
        controller = cloud.rollouts
        assert controller is not None

        def swapped() -> bool:
            # A rollout that failed or rolled back never brings every device over: say
            # why at once instead of waiting out the timeout.
            if all(d.version == NEW for d in fleet):
                return True
            rollout = controller.view().rollout
            if rollout.state in ("failed", "rolled_back"):
                raise RoadSenseError(
                    f"bench rollout: the rollout {rollout.state}: {rollout.reason}"
                )
            return False

        _wait(swapped, 300.0, "not all devices swapped")
        time_to_all = time.perf_counter() - started
    _wait(lambda: controller.view().rollout.state == "done", 30.0, "the rollout did not finish")
    view = controller.view()
    return {
        "time_to_all_s": time_to_all,
        "single_download_s": single_s,
        "canary_devices": sum(d.stage == 0 for d in status.devices),
        "rollout_state": view.rollout.state,
        "transitions": [e.to_state for e in view.events],
    }
