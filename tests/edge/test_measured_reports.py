"""Reports that carry what a camera measured: decoded, checked, stored, binned and served.

Schema version 2 reports carry ``Measurements``; version 1 reports (devices that only
classify) are still accepted. Stores run once on SQLite and once on PostgreSQL, and the
API runs on a real gRPC server on 127.0.0.1 port 0.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest

from roadsense.cloud.api.measure import ImageMeasurer
from roadsense.cloud.city.rows import MeasurementBin
from roadsense.cloud.city.segments import SegmentConfig
from roadsense.cloud.city.state import CityTracker
from roadsense.cloud.domain import ClassFigures, Measured, Reading, Rejected
from roadsense.cloud.ingest.decode import decode_message
from roadsense.cloud.store.sqlite import SqliteStore
from roadsense.core.timeutil import now_ms
from roadsense.models.shipped import DEFAULT_DETECTOR
from roadsense.proto import REPORT_SCHEMA_VERSION
from roadsense.proto.v1 import city_pb2, city_pb2_grpc, telemetry_pb2

from ..support.factories import report
from ..support.helpers import api_channel
from ..support.stores import StoreTarget

TOPIC = "roadsense/v1/dev-1/cam1/congestion"
SKEW_MS = 60_000
BIN_MS = 15 * 60_000
T0 = 1_796_000_400_000  # 2026-11-30T01:00:00Z, on a 15-minute boundary
STALE_MS = 20 * 60_000


def measurements(**overrides: object) -> telemetry_pb2.Measurements:
    figures: dict[str, object] = {
        "samples": 30,
        "vehicles_mean": 6.5,
        "vehicles_max": 9,
        "stopped_mean": 4.0,
        "stopped_max": 6,
        "occupancy": 0.31,
        "level": "heavy",
        "rule": "occupancy-stopped/1",
        "confidence": 0.8,
        "tracks": 12,
        "crossings_counted": True,
        "classes": [
            telemetry_pb2.ClassMeasurement(
                vehicle_class="car", mean_in_view=5.5, max_in_view=8, crossings=7
            ),
            telemetry_pb2.ClassMeasurement(
                vehicle_class="bus", mean_in_view=1.0, max_in_view=1, crossings=1
            ),
        ],
        "detector_version": "yolox-nano-coco/1",
    }
    figures.update(overrides)
    return telemetry_pb2.Measurements(**figures)  # type: ignore[arg-type]


def measured_report(**overrides: object) -> bytes:
    message = report(probabilities=[0.0, 0.05, 0.15, 0.8, 0.0])
    message.schema_version = REPORT_SCHEMA_VERSION
    message.measurements.CopyFrom(measurements(**overrides))
    return message.SerializeToString()


def _decode(payload: bytes) -> object:
    return decode_message(TOPIC, payload, now_ms(), SKEW_MS)


def test_a_measured_report_becomes_a_reading_whose_level_is_the_rules() -> None:
    reading = _decode(measured_report())
    assert isinstance(reading, Reading)
    assert reading.level == 7.5  # heavy on the city's 0-10 scale
    assert reading.measured == Measured(
        samples=30,
        vehicles_mean=6.5,
        vehicles_max=9,
        stopped_mean=4.0,
        stopped_max=6,
        occupancy=0.31,
        level="heavy",
        rule="occupancy-stopped/1",
        confidence=0.8,
        tracks=12,
        crossings_counted=True,
        classes=(ClassFigures("car", 5.5, 8, 7), ClassFigures("bus", 1.0, 1, 1)),
        detector_version="yolox-nano-coco/1",
    )


def test_an_older_devices_report_is_still_accepted() -> None:
    reading = _decode(report(probabilities=[0.0, 0.0, 1.0, 0.0, 0.0]).SerializeToString())
    assert isinstance(reading, Reading)
    assert reading.measured is None
    assert reading.level == 5.0


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"vehicles_mean": -1.0}, "vehicles_mean must be finite and not negative"),
        ({"occupancy": 1.5}, "occupancy is a share: at most 1"),
        ({"stopped_mean": 7.0, "stopped_max": 9}, "more vehicles stopped than vehicles"),
        ({"level": "gridlock"}, "level 'gridlock' is not one of free, light"),
        ({"rule": ""}, "rule must name the rule"),
        ({"samples": 0}, "samples of 1 or more"),
        ({"speed_unit": "mph"}, "speed_unit 'mph' is not km/h or px/s"),
        (
            {"classes": [telemetry_pb2.ClassMeasurement(vehicle_class="person", max_in_view=1)]},
            "class 'person' is not one of car, motorcycle, bus, truck",
        ),
        (
            {
                "crossings_counted": False,
                "classes": [
                    telemetry_pb2.ClassMeasurement(
                        vehicle_class="car", mean_in_view=1, max_in_view=1, crossings=2
                    )
                ],
            },
            "crossings given but crossings_counted is false",
        ),
    ],
)
def test_impossible_measurements_are_dead_lettered_with_the_reason(
    overrides: dict[str, object], reason: str
) -> None:
    rejected = _decode(measured_report(**overrides))
    assert isinstance(rejected, Rejected)
    assert rejected.code == "bad_measurements"
    assert reason in rejected.reason


def test_schema_versions_the_cloud_does_not_know_are_refused() -> None:
    old_with_measurements = report()
    old_with_measurements.measurements.CopyFrom(measurements())
    refused = _decode(old_with_measurements.SerializeToString())
    assert isinstance(refused, Rejected)
    assert refused.reason == "measurements need schema_version 2"
    future = report()
    future.schema_version = 3
    refused = _decode(future.SerializeToString())
    assert isinstance(refused, Rejected)
    assert refused.reason == "schema_version 3 is not supported (expected 1 or 2)"


def _reading(
    device: str, camera: str, seq: int, capture_ms: int, measured: Measured | None
) -> Reading:
    return Reading(
        device_id=device,
        camera_id=camera,
        segment_id="seg-1",
        seq=seq,
        capture_time_ms=capture_ms,
        window_start_ms=capture_ms - 10_000,
        received_ms=capture_ms + 100,
        model_version="m",
        labels=("free", "light", "moderate", "heavy", "jammed"),
        probabilities=(0.0, 0.0, 0.2, 0.8, 0.0),
        frames_in_window=10,
        level=7.5,
        measured=measured,
    )


def _measured(vehicles: float, stopped: float, occupancy: float, cars: int) -> Measured:
    return Measured(
        samples=10,
        vehicles_mean=vehicles,
        vehicles_max=int(vehicles) + 1,
        stopped_mean=stopped,
        stopped_max=int(stopped) + 1,
        occupancy=occupancy,
        level="heavy",
        rule="occupancy-stopped/1",
        confidence=0.8,
        crossings_counted=True,
        classes=(ClassFigures("car", vehicles, int(vehicles) + 1, cars),),
    )


def test_bins_add_cameras_up_and_each_camera_counts_once_per_bin(
    store_target: StoreTarget,
) -> None:
    store = store_target.open()
    tracker = CityTracker(STALE_MS)
    batch = [
        # Camera A twice in the first bin: its mean counts, its crossings add up.
        _reading("dev-1", "cam-a", 1, T0 + 60_000, _measured(4.0, 2.0, 0.2, 3)),
        _reading("dev-1", "cam-a", 2, T0 + 120_000, _measured(6.0, 4.0, 0.4, 5)),
        # Camera B, other lanes of the same segment, in the first bin.
        _reading("dev-2", "cam-b", 1, T0 + 90_000, _measured(3.0, 0.0, 0.1, 2)),
        # Camera A in the second bin, and a report without measurements (ignored).
        _reading("dev-1", "cam-a", 3, T0 + BIN_MS + 1_000, _measured(1.0, 0.0, 0.05, 1)),
        _reading("dev-3", "cam-c", 1, T0 + BIN_MS + 2_000, None),
    ]
    store.write_batch(batch, tracker.apply)
    bins = store.measurement_bins("seg-1", T0, T0 + 2 * BIN_MS, BIN_MS)
    assert bins == [
        MeasurementBin(
            start_ms=T0,
            vehicles=8.0,  # camera A's mean 5 + camera B's 3
            stopped=3.0,
            occupancy=0.2,  # mean of 0.3 and 0.1
            cameras=2,
            reports=3,
            in_view={"car": 8.0},
            crossings={"car": 10},
        ),
        MeasurementBin(
            start_ms=T0 + BIN_MS,
            vehicles=1.0,
            stopped=0.0,
            occupancy=0.05,
            cameras=1,
            reports=1,
            in_view={"car": 1.0},
            crossings={"car": 1},
        ),
    ]
    assert store.measurement_bins("seg-1", T0 + 2 * BIN_MS, T0 + 3 * BIN_MS, BIN_MS) == []
    newest = store.camera_measurements("seg-1")
    assert [(c.device_id, c.camera_id, c.capture_time_ms) for c in newest] == [
        ("dev-1", "cam-a", T0 + BIN_MS + 1_000),
        ("dev-2", "cam-b", T0 + 90_000),
    ]
    assert newest[0].measured == _measured(1.0, 0.0, 0.05, 1)
    (segment,) = store.segments(["seg-1"])
    # Fresh cameras at the newest capture: A (1.0 vehicles) and B (3.0) measure, C does not.
    assert (segment.vehicles, segment.stopped, segment.measured_cameras) == (4.0, 0.0, 2)
    assert segment.occupancy == 0.075
    store.close()


@pytest.fixture
def measured_store(tmp_path: Path) -> SqliteStore:
    store = SqliteStore(tmp_path / "city.sqlite")
    tracker = CityTracker(STALE_MS)
    store.write_batch(
        [_reading("dev-1", "cam-a", 1, T0 + 60_000, _measured(4.0, 2.0, 0.2, 3))],
        tracker.apply,
    )
    return store


def test_the_api_serves_bins_and_names_what_is_wrong(measured_store: SqliteStore) -> None:
    city = [SegmentConfig(id="seg-1", name="High St")]
    with api_channel(measured_store, city=city) as channel:
        stub = city_pb2_grpc.CityServiceStub(channel)
        answer = stub.GetSegmentBins(
            city_pb2.GetSegmentBinsRequest(
                segment_id="seg-1", from_ms=T0, to_ms=T0 + BIN_MS, bin_minutes=15
            ),
            timeout=10,
        )
        assert answer.bin_ms == BIN_MS
        (only,) = answer.bins
        assert (only.start_ms, only.vehicles, only.stopped, only.cameras) == (T0, 4.0, 2.0, 1)
        assert dict(only.crossings) == {"car": 3}
        segment = stub.GetSegment(city_pb2.GetSegmentRequest(segment_id="seg-1"), timeout=10)
        (camera,) = segment.cameras
        assert (camera.camera_id, camera.measurements.vehicles_mean) == ("cam-a", 4.0)
        for request, code, words in (
            (
                city_pb2.GetSegmentBinsRequest(
                    segment_id="seg-1", from_ms=T0, to_ms=T0 + BIN_MS, bin_minutes=7
                ),
                grpc.StatusCode.INVALID_ARGUMENT,
                "bin_minutes must be 5 or 15, not 7",
            ),
            (
                city_pb2.GetSegmentBinsRequest(
                    segment_id="seg-1", from_ms=T0 + BIN_MS, to_ms=T0, bin_minutes=5
                ),
                grpc.StatusCode.INVALID_ARGUMENT,
                "is not before to_ms",
            ),
            (
                city_pb2.GetSegmentBinsRequest(
                    segment_id="seg-1", from_ms=T0, to_ms=T0 + 40 * 86_400_000, bin_minutes=5
                ),
                grpc.StatusCode.INVALID_ARGUMENT,
                "31 days at most",
            ),
            (
                city_pb2.GetSegmentBinsRequest(
                    segment_id="nowhere", from_ms=T0, to_ms=T0 + BIN_MS, bin_minutes=5
                ),
                grpc.StatusCode.NOT_FOUND,
                "no segment 'nowhere'",
            ),
        ):
            with pytest.raises(grpc.RpcError) as caught:
                stub.GetSegmentBins(request, timeout=10)
            assert caught.value.code() == code
            assert words in (caught.value.details() or "")


def test_the_bins_export_writes_csv_and_refuses_a_bad_time(
    measured_store: SqliteStore, tmp_path: Path
) -> None:
    measured_store.close()
    config = tmp_path / "cloud.toml"
    config.write_text('[store]\npath = "city.sqlite"\n', encoding="utf-8")
    out = tmp_path / "bins.csv"
    command = [sys.executable, "-m", "roadsense.cli", "cloud", "bins", "--config", str(config)]
    command += ["--segment", "seg-1", "--from", "2026-11-30T01:00", "--to", "2026-11-30T02:00"]
    done = subprocess.run(
        [*command, "--out", str(out)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert out.read_text(encoding="utf-8").splitlines() == [
        "segment_id,start_utc,start_ms,bin_minutes,cameras,reports,vehicles,stopped,occupancy,"
        "car_in_view,motorcycle_in_view,bus_in_view,truck_in_view,"
        "car_crossings,motorcycle_crossings,bus_crossings,truck_crossings",
        f"seg-1,2026-11-30T01:00:00Z,{T0},15,1,1,4.0,2.0,0.2,4.0,0.0,0.0,0.0,3,0,0,0",
    ]
    bad = [*command[:-4], "--from", "yesterday", "--to", "2026-11-30T02:00"]
    done = subprocess.run(bad, capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert "--from 'yesterday' is not an ISO 8601 time" in done.stderr
    assert "Traceback" not in done.stderr


def test_measure_image_counts_the_vehicles_in_the_zone_and_draws_the_evidence(
    tmp_path: Path,
) -> None:
    clip = Path(__file__).resolve().parents[2] / "models" / "data" / "footage"
    capture = cv2.VideoCapture(str(clip / "tfl-07355-pentonville-2019-06-28.mp4"))
    ok, frame = capture.read()
    capture.release()
    assert ok
    jpeg = cv2.imencode(".jpg", frame)[1].tobytes()
    measurer = ImageMeasurer(DEFAULT_DETECTOR, max_image_bytes=1 << 20, max_pixels=1 << 22)
    store = SqliteStore(tmp_path / "city.sqlite")
    with api_channel(store, measurer=measurer) as channel:
        stub = city_pb2_grpc.CityServiceStub(channel)
        whole = stub.MeasureImage(city_pb2.MeasureImageRequest(image=jpeg), timeout=30)
        assert len(whole.vehicles) > 3
        assert {v.vehicle_class for v in whole.vehicles} <= {"car", "motorcycle", "bus", "truck"}
        assert all(0 <= v.x1 < v.x2 <= 352 and 0 <= v.y1 < v.y2 <= 288 for v in whole.vehicles)
        assert whole.evidence_png == b""
        lower = [0.0, 0.5, 1.0, 0.5, 1.0, 1.0, 0.0, 1.0]
        half = stub.MeasureImage(
            city_pb2.MeasureImageRequest(image=jpeg, zone=lower, explain=True), timeout=30
        )
        # Only the vehicles standing in the lower half count.
        assert len(half.vehicles) == sum(v.y2 - 1 >= 144 for v in whole.vehicles)
        evidence = cv2.imdecode(np.frombuffer(half.evidence_png, np.uint8), cv2.IMREAD_COLOR)
        assert evidence is not None
        assert evidence.shape == frame.shape
        assert not np.array_equal(evidence, frame)  # boxes and text drawn on it
        for request, words in (
            (city_pb2.MeasureImageRequest(image=b"not an image"), "not a JPEG or PNG"),
            (city_pb2.MeasureImageRequest(image=jpeg, zone=[0.1, 0.2]), "3 or more x, y pairs"),
        ):
            with pytest.raises(grpc.RpcError) as caught:
                stub.MeasureImage(request, timeout=30)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert words in (caught.value.details() or "")
    store.close()
