"""Log output: text or JSON to stderr, whatever stderr is when a record is written."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from roadsense.core.logs import configure_logging


@pytest.fixture
def root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("root_logging")
def test_logs_follow_stderr_when_it_is_replaced_and_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = io.StringIO()
    monkeypatch.setattr("sys.stderr", first)
    configure_logging("INFO", "json")
    logging.getLogger("roadsense.test").info("one %d", 1)
    first.close()  # what a test runner does to the stderr it captured
    second = io.StringIO()
    monkeypatch.setattr("sys.stderr", second)
    errors: list[BaseException] = []
    monkeypatch.setattr(logging, "raiseExceptions", True)
    monkeypatch.setattr(
        logging.Handler, "handleError", lambda self, record: errors.append(RuntimeError(record))
    )
    logging.getLogger("roadsense.test").warning("two %d", 2)
    assert errors == []
    entry = json.loads(second.getvalue())
    assert (entry["level"], entry["logger"], entry["message"]) == (
        "WARNING",
        "roadsense.test",
        "two 2",
    )
