# transitional re-export: removed at merge (issue 12)
"""Moved to the kit: :mod:`tools.cluster`, :mod:`tools.replicas`, :mod:`tools.leader_files`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from tools.cluster import Cluster
from tools.leader_files import LEADER_FILE, LeaderFile, parse_time
from tools.ports import free_port
from tools.replicas import REPO_ROOT, Replica
from tools.waiting import wait_for

__all__ = ["LEADER_FILE", "REPO_ROOT", "Cluster", "LeaderFile", "Replica", "free_port", "parse_time", "poll"]

T = TypeVar("T")


def poll(predicate: Callable[[], T | None], timeout: float, message: str, interval: float = 0.01) -> T:
    """The old ``poll(predicate, timeout, message, interval)`` over :func:`tools.waiting.wait_for`."""
    return wait_for(predicate, timeout, message, interval=interval)
