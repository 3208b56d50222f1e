"""The refusal table both ends read: what the device writes, the rollout reads back."""

from __future__ import annotations

import pytest

from roadsense.cloud.rollout.steps import is_model_fault
from roadsense.core.errors import ModelUpdateError
from roadsense.proto.refusals import REASONS, Refusal, refusal_of


@pytest.mark.parametrize("reason", list(Refusal))
def test_what_a_device_writes_the_cloud_reads_back(reason: Refusal) -> None:
    text = str(ModelUpdateError(reason, "details: with a colon"))
    assert text == f"{reason.value}: details: with a colon"
    assert refusal_of(text) is reason
    assert is_model_fault(text) is reason.blames_model


def test_the_model_faults_are_the_ones_that_blame_the_release() -> None:
    faults = [r.value for r in Refusal if r.blames_model]
    assert faults == [
        "signature",
        "size",
        "sha256",
        "card",
        "version",
        "load",
        "self_test",
        "latency",
        "swap",
    ]
    assert [r.value for r in Refusal if r.retried] == ["download"]
    assert REASONS[0] == "command"
    assert REASONS[-1] == "superseded"


@pytest.mark.parametrize("text", ["", "no colon here", "brand_new_reason: from a newer device"])
def test_an_unknown_reason_is_no_model_fault(text: str) -> None:
    assert refusal_of(text) is None
    assert not is_model_fault(text)
