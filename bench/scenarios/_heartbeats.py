"""The exec scenario's children, seen from outside: each writes ``hb-<pid>-<ns>.log`` (a JSON header
line ``#{...}``, then its wall time every 10 ms; ``bench/baselines/heartbeat.py``).

A file's first beat says when its child started, its last when it was last alive; :func:`running`
tells a live child from a finished one (a zombie) and from a stranger that reused its pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench.common import proc_stat
from bench.fleet import Group


def heartbeat_dir(group: Group) -> Path:
    """Where the children of ``group``'s contenders write their heartbeat files (made if need be)."""
    path = group.workdir / "heartbeats"
    path.mkdir(parents=True, exist_ok=True)
    return path


def read_beats(path: Path) -> list[float]:
    """The beats of one child (wall times), a partly written last line left out."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    lines = text.split("\n")[:-1]  # the piece after the last newline may be half written
    return [float(line) for line in lines if line and not line.startswith("#")]


def heartbeat_files(directory: Path) -> list[Path]:
    """Every child's heartbeat file in ``directory``, running or not."""
    return list(directory.glob("hb-*.log"))


_HEADERS: dict[Path, dict[str, Any]] = {}


def child_header(path: Path) -> dict[str, Any] | None:
    """The child's JSON header (pid, ppid, start time...), None until it has written it."""
    if path not in _HEADERS:
        with contextlib.suppress(FileNotFoundError, ValueError):
            for line in path.read_text().split("\n")[:-1]:
                if line.startswith("#"):
                    _HEADERS[path] = json.loads(line[1:])
                    break
    return _HEADERS.get(path)


def child_pid(path: Path) -> int:
    """The pid in the file's name (the child's own, as it named its file)."""
    return int(path.name.split("-")[1])


def running(path: Path) -> bool:
    """True while the child of this heartbeat file runs: its pid is alive, not a zombie (which has
    finished and only waits for its parent) and started when the child did (pids are reused)."""
    fields = proc_stat(child_pid(path))
    if fields is None or fields[0] == "Z":
        return False
    header = child_header(path)
    return header is None or str(header.get("starttime")) == fields[19]


def holder_of(path: Path, holders: Iterable[int], depth: int = 4) -> int | None:
    """The first of ``holders`` (wrapper pids) among a running child's ancestors, its parent first,
    up to ``depth`` levels; None once the child is gone or when none of them holds it. Ancestors, not
    only the parent: the app runs its command under a supervising ``/bin/sh`` (so the heartbeat
    child is its grandchild), ``etcdctl`` and the kazoo wrapper run it directly."""
    wanted = set(holders)
    pid = child_pid(path) if running(path) else None
    for _ in range(depth):
        fields = proc_stat(pid) if pid is not None else None
        if fields is None:
            return None
        pid = int(fields[1])
        if pid in wanted:
            return pid
    return None


def kill_child(path: Path) -> None:
    """SIGKILL the file's child if it still runs (never a stranger that reused its pid)."""
    if running(path):
        with contextlib.suppress(ProcessLookupError):
            os.kill(child_pid(path), signal.SIGKILL)
