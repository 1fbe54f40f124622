"""Logging set-up: one JSON object per line (python-json-logger) or readable text.

Every line carries ``time``, ``level``, ``logger``, ``message``, the replica's ``identity``, the
``election_path`` and the machine's current ``state``; states add an ``event`` and its details
(a transition adds ``from``, ``to``, ``reason`` and ``duration_seconds``).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import TextIO

from pythonjsonlogger.json import JsonFormatter

TEXT_FORMAT = "%(asctime)s %(levelname)-7s [%(identity)s %(state)s] %(message)s"


class ContextFilter(logging.Filter):
    """Adds the replica's identity, election path and current state to every record."""

    def __init__(self, identity: str, election_path: str, state: Callable[[], str]) -> None:
        super().__init__()
        self.identity = identity
        self.election_path = election_path
        self.state = state

    def filter(self, record: logging.LogRecord) -> bool:
        record.identity = self.identity
        record.election_path = self.election_path
        record.state = self.state()
        if not hasattr(record, "event"):
            record.event = "log"
        return True


def configure(
    *,
    level: str,
    fmt: str,
    identity: str,
    election_path: str,
    state: Callable[[], str],
    stream: TextIO | None = None,
) -> logging.Handler:
    """Route the root logger to ``stream`` (stderr by default) in ``fmt``; return the handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(ContextFilter(identity, election_path, state))
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter(
                "%(levelname)s %(name)s %(message)s %(identity)s %(election_path)s %(state)s %(event)s",
                rename_fields={"levelname": "level", "name": "logger"},
                timestamp="time",
                json_ensure_ascii=False,
            )
        )
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # kazoo narrates every reconnect at INFO; our adapter logs the state changes that matter.
    logging.getLogger("election.kazoo").setLevel(logging.DEBUG if level == "debug" else logging.WARNING)
    return handler
