"""GetCityState's encoded answers: shared per change version, never older than the city."""

from __future__ import annotations

import threading
import time
import zlib
from pathlib import Path

import grpc
import pytest

from roadsense.cloud.api.messages import segment_entry, segment_message
from roadsense.cloud.api.state_cache import EncodedAnswer, EncodedStateCache
from roadsense.cloud.city.state import CityTracker
from roadsense.cloud.city.watch import ChangeFeed
from roadsense.cloud.domain import Reading
from roadsense.cloud.ingest.decode import decode_message
from roadsense.cloud.store.sqlite import SqliteStore
from roadsense.core.timeutil import now_ms
from roadsense.proto.v1 import city_pb2, city_pb2_grpc

from ..support.factories import report, status
from ..support.helpers import api_channel


def test_concurrent_callers_share_one_build_per_version() -> None:
    cache = EncodedStateCache(max_age_ms=60_000)
    started = threading.Barrier(16)
    answers: list[bytes] = []

    def slow_build() -> EncodedAnswer:
        time.sleep(0.2)  # every other caller arrives while this one builds
        return EncodedAnswer(b"v1", 1000, 10_000)

    def ask() -> None:
        started.wait()
        answers.append(cache.get(b"all", 1, 1000, slow_build))

    callers = [threading.Thread(target=ask) for _ in range(16)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert (answers, cache.builds) == ([b"v1"] * 16, 1)
    assert cache.get(b"all", 1, 9_999, slow_build) == b"v1"
    assert cache.builds == 1

    def rebuilt(tag: bytes) -> EncodedAnswer:
        return EncodedAnswer(tag, 10_000, 20_000)

    # A new version, the staleness deadline and another question each build anew.
    assert cache.get(b"all", 2, 9_999, lambda: rebuilt(b"v2")) == b"v2"
    assert cache.get(b"all", 2, 20_000, lambda: rebuilt(b"late")) == b"late"
    assert cache.get(b"seg-1", 2, 10_000, lambda: rebuilt(b"one")) == b"one"
    assert cache.builds == 4


def test_an_answer_is_rebuilt_once_it_is_max_age_old_and_errors_are_not_kept() -> None:
    cache = EncodedStateCache(max_age_ms=1000)
    assert cache.get(b"q", 1, 0, lambda: EncodedAnswer(b"a", 0, 2**62)) == b"a"
    assert cache.get(b"q", 1, 999, lambda: EncodedAnswer(b"b", 999, 2**62)) == b"a"
    assert cache.get(b"q", 1, 1000, lambda: EncodedAnswer(b"c", 1000, 2**62)) == b"c"

    def broken() -> EncodedAnswer:
        raise ValueError("no state")

    with pytest.raises(ValueError, match="no state"):
        cache.get(b"other", 1, 0, broken)
    assert cache.get(b"other", 1, 0, lambda: EncodedAnswer(b"d", 0, 2**62)) == b"d"


def test_joined_segment_entries_are_the_city_state_message() -> None:
    tracker = CityTracker(60_000)
    t = now_ms()
    # ~66 cameras a segment: entries longer than 127 bytes, so multi-byte lengths.
    tracker.apply([_reading(t, seq, f"dev-{seq}", f"seg-{seq % 3}") for seq in range(1, 200)])
    segments = tracker.snapshot(t)
    header = city_pb2.CityState(congestion_index=4.5, as_of_ms=t, devices_online=3)
    encoded = b"".join(segment_entry(s) for s in segments) + header.SerializeToString()
    expected = city_pb2.CityState(
        segments=[segment_message(s) for s in segments],
        congestion_index=4.5,
        as_of_ms=t,
        devices_online=3,
    )
    assert city_pb2.CityState.FromString(encoded) == expected
    assert [len(s.camera_ids) for s in expected.segments] == [66, 67, 66]


def _reading(t: int, seq: int, device: str = "dev-1", segment: str = "seg-1") -> Reading:
    message = report(device=device, seq=seq, capture_time_ms=t, segment=segment)
    record = decode_message(
        f"roadsense/v1/{device}/cam1/congestion", message.SerializeToString(), t, 30_000
    )
    assert isinstance(record, Reading)
    return record


def test_answers_follow_changes_devices_and_staleness(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "city.sqlite")
    tracker = CityTracker(stale_after_ms=1500)
    feed = ChangeFeed()
    with api_channel(store, tracker=tracker, feed=feed) as channel:
        stub = city_pb2_grpc.CityServiceStub(channel)

        def ask() -> city_pb2.CityState:
            state: city_pb2.CityState = stub.GetCityState(city_pb2.GetCityStateRequest(), timeout=5)
            return state

        t = now_ms()
        store.write_batch([_reading(t, 1)], tracker.apply)
        first = ask()
        assert [(s.segment_id, s.reports, s.stale) for s in first.segments] == [("seg-1", 1, False)]
        assert ask() == first  # the same answer, shared
        store.write_batch([_reading(now_ms(), 2)], tracker.apply)
        assert [s.reports for s in ask().segments] == [2]
        # A status changes no segment, but the device counts: published, so answered.
        birth = decode_message(
            "roadsense/v1/dev-2/status", status("dev-2").SerializeToString(), now_ms(), 30_000
        )
        result = store.write_batch([birth], tracker.apply)
        feed.publish(result.segments)
        counted = ask()
        assert (counted.devices_online, counted.devices_offline) == (2, 0)
        # Nothing changes, yet the segment turns stale on time.
        time.sleep(1.6)
        stale = ask()
        assert [s.stale for s in stale.segments] == [True]
        assert stale.congestion_index == 0.0
        assert stale.as_of_ms > counted.as_of_ms
    store.close()


def test_the_deflated_answer_is_the_plain_one_compressed(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "city.sqlite")
    tracker = CityTracker(stale_after_ms=60_000)
    with api_channel(store, tracker=tracker, feed=ChangeFeed()) as channel:
        stub = city_pb2_grpc.CityServiceStub(channel)

        def both(request: city_pb2.GetCityStateRequest) -> tuple[bytes, bytes]:
            plain: city_pb2.CityState = stub.GetCityState(request, timeout=5)
            packed: city_pb2.DeflatedCityState = stub.GetCityStateDeflated(request, timeout=5)
            inflated = zlib.decompress(packed.city_state)
            assert packed.encoded_size == len(inflated)
            # Built from the same cached answer while the city stands still: the same bytes.
            return plain.SerializeToString(), inflated

        t = now_ms()
        readings = [_reading(t, seq, f"dev-{seq}", f"seg-{seq % 50}") for seq in range(1, 400)]
        store.write_batch(readings, tracker.apply)
        plain, inflated = both(city_pb2.GetCityStateRequest())
        assert city_pb2.CityState.FromString(inflated) == city_pb2.CityState.FromString(plain)
        assert len(city_pb2.CityState.FromString(inflated).segments) == 50
        only = city_pb2.GetCityStateRequest(segment_ids=["seg-7"])
        _, one = both(only)
        assert [s.segment_id for s in city_pb2.CityState.FromString(one).segments] == ["seg-7"]
        # A change reaches the deflated answer too.
        store.write_batch([_reading(now_ms(), 400, "dev-400", "seg-7")], tracker.apply)
        _, changed = both(only)
        assert [s.reports for s in city_pb2.CityState.FromString(changed).segments] == [9]
        with pytest.raises(grpc.RpcError) as refused:
            stub.GetCityStateDeflated(city_pb2.GetCityStateRequest(min_level=11.0), timeout=5)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    store.close()
