"""Logging set-up: JSON lines with the replica's context, readable text, the machine's transitions."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from app import logs
from tests.unit.conftest import Harness

# Handlers that this module's tests installed with logs.configure.
_installed: list[logging.Handler] = []


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """configure() rewires the root logger: undo that after each test.

    pytest attaches its own capture handlers to the root logger for each phase and removes them
    itself, so only ours are taken off and only the others that were there before are put back.
    """
    root = logging.getLogger()
    kazoo = logging.getLogger("election.kazoo")
    before, level, kazoo_level = list(root.handlers), root.level, kazoo.level
    yield
    while _installed:
        root.removeHandler(_installed.pop())
    for handler in before:
        if not type(handler).__module__.startswith("_pytest") and handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)
    kazoo.setLevel(kazoo_level)


class State:
    """The machine's current state as the log filter reads it; the test changes it."""

    def __init__(self, name: str = "Init") -> None:
        self.name = name

    def __call__(self) -> str:
        return self.name


def configure(fmt: str = "json", level: str = "info", state: State | None = None) -> io.StringIO:
    stream = io.StringIO()
    handler = logs.configure(
        level=level,
        fmt=fmt,
        identity="replica-0",
        election_path="/election",
        state=state or State("Attempter"),
        stream=stream,
    )
    _installed.append(handler)
    return stream


def records(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


# -- JSON ------------------------------------------------------------------------------------


def test_json_line_has_the_standard_fields() -> None:
    stream = configure()
    logging.getLogger("election.test").info("hello %s", "world")
    (record,) = records(stream)
    assert record["level"] == "INFO"
    assert record["logger"] == "election.test"
    assert record["message"] == "hello world"
    assert record["identity"] == "replica-0"
    assert record["election_path"] == "/election"
    assert record["state"] == "Attempter"
    assert record["event"] == "log"


def test_json_time_is_a_timezone_aware_timestamp() -> None:
    stream = configure()
    logging.getLogger("election.test").info("now")
    stamp = datetime.fromisoformat(records(stream)[0]["time"])
    assert stamp.utcoffset() == timedelta(0)


def test_json_writes_one_object_per_line() -> None:
    stream = configure()
    log = logging.getLogger("election.test")
    log.info("first\nsecond line of the same message")
    log.warning("third")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert [json.loads(line)["message"] for line in lines] == [
        "first\nsecond line of the same message",
        "third",
    ]


def test_json_keeps_an_exception_on_its_one_line() -> None:
    stream = configure()
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("election.test").exception("failed")
    (record,) = records(stream)
    assert "RuntimeError: boom" in record["exc_info"]


def test_json_carries_the_event_and_details_a_caller_adds() -> None:
    stream = configure()
    logging.getLogger("election.test").warning(
        "removed leftovers", extra={"event": "leftovers_removed", "count": 2}
    )
    (record,) = records(stream)
    assert record["event"] == "leftovers_removed"
    assert record["count"] == 2


def test_state_is_read_when_each_line_is_logged() -> None:
    state = State("Attempter")
    stream = configure(state=state)
    log = logging.getLogger("election.test")
    log.info("before")
    state.name = "Leader"
    log.info("after")
    assert [r["state"] for r in records(stream)] == ["Attempter", "Leader"]


def test_level_filters_lower_levels() -> None:
    stream = configure(level="warning")
    log = logging.getLogger("election.test")
    log.info("hidden")
    log.warning("shown")
    assert [r["message"] for r in records(stream)] == ["shown"]


def test_configuring_again_replaces_the_handler() -> None:
    configure()
    stream = configure()
    logging.getLogger("election.test").info("once")
    assert len(records(stream)) == 1


def test_kazoo_chatter_is_hidden_below_warning_unless_debugging() -> None:
    stream = configure(level="info")
    logging.getLogger("election.kazoo").info("Connecting to zk:2181")
    assert records(stream) == []


def test_kazoo_logs_everything_at_debug_level() -> None:
    stream = configure(level="debug")
    logging.getLogger("election.kazoo").debug("Connecting to zk:2181")
    assert [r["message"] for r in records(stream)] == ["Connecting to zk:2181"]


# -- text ------------------------------------------------------------------------------------


def test_text_line_is_readable_with_level_identity_state_and_message() -> None:
    stream = configure(fmt="text", state=State("Leader"))
    logging.getLogger("election.test").warning("disk is slow")
    (line,) = stream.getvalue().splitlines()
    assert line.endswith("WARNING [replica-0 Leader] disk is slow")
    datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")  # starts with a readable time


# -- the machine's transitions ---------------------------------------------------------------


def run_logged(harness: Harness, stop_at: float) -> list[dict[str, Any]]:
    stream = io.StringIO()
    handler = logs.configure(
        level="info",
        fmt="json",
        identity="me",
        election_path="/election",
        state=lambda: str(harness.replica.machine.state),
        stream=stream,
    )
    _installed.append(handler)
    harness.stop_at(stop_at, "test stop")
    assert harness.run() == 0
    return records(stream)


def test_a_transition_is_one_line_with_from_to_reason_and_time_spent(harness: Harness) -> None:
    lines = run_logged(harness, 2.5)
    (stop,) = [r for r in lines if r["event"] == "transition" and r["to"] == "Stopping"]
    assert stop["from"] == "Leader"
    assert stop["reason"] == "test stop"
    assert stop["duration_seconds"] == 2.5
    assert stop["identity"] == "me"
    assert stop["message"] == "Leader -> Stopping: test stop"


def test_every_transition_of_a_run_is_logged_in_order(harness: Harness) -> None:
    lines = run_logged(harness, 2.5)
    moves = [(r["from"], r["to"]) for r in lines if r["event"] == "transition"]
    assert moves == [("Init", "Attempter"), ("Attempter", "Leader"), ("Leader", "Stopping")]


def test_the_start_is_logged_as_entering_init(harness: Harness) -> None:
    lines = run_logged(harness, 1.0)
    assert lines[0]["event"] == "start"
    assert lines[0]["to"] == "Init"


def test_a_transition_line_carries_the_state_being_left(harness: Harness) -> None:
    lines = run_logged(harness, 2.5)
    (stop,) = [r for r in lines if r["event"] == "transition" and r["to"] == "Stopping"]
    assert stop["state"] == "Leader"  # logged before the machine moves on
