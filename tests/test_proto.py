"""The wire contract: generated code is current, topics build and parse."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from roadsense.proto.topics import (
    CommandTopic,
    TelemetryTopic,
    TopicKind,
    command_topic,
    congestion_topic,
    health_topic,
    is_identifier,
    parse_command_topic,
    parse_reply_topic,
    parse_topic,
    reply_filter,
    reply_topic,
    status_topic,
    telemetry_subscriptions,
)

REPO = Path(__file__).resolve().parent.parent


def test_generated_code_is_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "proto" / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_topics_round_trip() -> None:
    assert parse_topic(status_topic("dev-1")) == TelemetryTopic(TopicKind.STATUS, "dev-1")
    assert parse_topic(health_topic("dev-1")) == TelemetryTopic(TopicKind.HEALTH, "dev-1")
    assert parse_topic(congestion_topic("dev-1", "cam.2")) == TelemetryTopic(
        TopicKind.CONGESTION, "dev-1", "cam.2"
    )
    assert congestion_topic("d", "c") == "roadsense/v1/d/c/congestion"


@pytest.mark.parametrize(
    "topic",
    [
        "roadsense/v1/dev-1",
        "roadsense/v2/dev-1/status",
        "roadsense/v1/dev-1/cam/speed",
        "roadsense/v1/+/status",
        "roadsense/v1/dev 1/status",
        "roadsense/v1/dev-1/cmd/snapshot",
        "other/v1/dev-1/status",
        "roadsense/v1/dev-1/status\n",
        "roadsense/v1/dev-1/cam1/congestion\n",
    ],
)
def test_foreign_topics_do_not_parse(topic: str) -> None:
    assert parse_topic(topic) is None


@pytest.mark.parametrize("value", ["seg-1\n", "seg-1 ", "", "-seg", "a" * 65, "seg/1", "seg+"])
def test_what_is_not_an_identifier(value: str) -> None:
    assert not is_identifier(value)


def test_shared_subscriptions() -> None:
    assert telemetry_subscriptions() == [
        "roadsense/v1/+/status",
        "roadsense/v1/+/health",
        "roadsense/v1/+/+/congestion",
    ]
    assert telemetry_subscriptions("grp")[0] == "$share/grp/roadsense/v1/+/status"


def test_command_and_reply_topics_are_built_and_parsed_in_one_place() -> None:
    assert parse_reply_topic(reply_topic("dev-1", "model")) == CommandTopic("dev-1", "model")
    assert parse_command_topic(command_topic("dev-1", "config")) == CommandTopic("dev-1", "config")
    assert parse_reply_topic(command_topic("dev-1", "model")) is None
    assert parse_command_topic("roadsense/v1/dev-1/cmd/a/b") is None
    assert parse_reply_topic("roadsense/v1/+/reply/model") is None
    assert reply_filter("model") == "roadsense/v1/+/reply/model"
