"""Delivery confirmations from the cloud to a device, built and read in one place.

The cloud confirms the sequence numbers it committed as inclusive ranges; a
device removes exactly those reports from its outbox.
"""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf.message import DecodeError

from roadsense.core.errors import PayloadError
from roadsense.proto import SCHEMA_VERSION
from roadsense.proto.v1 import telemetry_pb2

SeqRanges = list[tuple[int, int]]
"""Inclusive (first, last) ranges of sequence numbers, ascending, not overlapping."""

MAX_RANGES = 10_000
"""Most ranges one confirmation may carry (a device refuses larger ones)."""


def seq_ranges(seqs: Iterable[int]) -> SeqRanges:
    """Collapse sequence numbers into ascending inclusive ranges."""
    ranges: SeqRanges = []
    for seq in sorted(set(seqs)):
        if ranges and seq == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], seq)
        else:
            ranges.append((seq, seq))
    return ranges


def encode_delivery_ack(device_id: str, ranges: SeqRanges, time_ms: int) -> bytes:
    """The DeliveryAck payload confirming ``ranges`` of ``device_id``."""
    return telemetry_pb2.DeliveryAck(
        schema_version=SCHEMA_VERSION,
        device_id=device_id,
        ranges=[telemetry_pb2.SeqRange(first=first, last=last) for first, last in ranges],
        time_ms=time_ms,
    ).SerializeToString()


def decode_delivery_ack(payload: bytes, device_id: str) -> SeqRanges:
    """The ranges a DeliveryAck confirms to ``device_id``; PayloadError when it is not one."""
    try:
        ack = telemetry_pb2.DeliveryAck.FromString(payload)
    except DecodeError as err:
        raise PayloadError(f"not a DeliveryAck protobuf: {err}") from err
    if ack.schema_version != SCHEMA_VERSION:
        raise PayloadError(f"schema_version {ack.schema_version} is not {SCHEMA_VERSION}")
    if ack.device_id != device_id:
        raise PayloadError(f"confirmation for {ack.device_id!r}, not for {device_id!r}")
    if len(ack.ranges) > MAX_RANGES:
        raise PayloadError(f"{len(ack.ranges)} ranges (limit {MAX_RANGES})")
    ranges = [(r.first, r.last) for r in ack.ranges]
    bad = next(((f, last) for f, last in ranges if f == 0 or last < f), None)
    if bad is not None:
        raise PayloadError(f"range {bad[0]}..{bad[1]} is empty or starts at 0")
    return ranges
