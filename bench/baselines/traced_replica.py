"""``election run`` with a timeline: every ZooKeeper call, storage call and wake-up timed to a file.

    PYTHONPATH=<app>:<repo> python bench/baselines/traced_replica.py --trace-file F run ...

Not a baseline: the profiler behind ``python -m bench trace``. It wraps, before the app starts, every
public method of the coordination adapter that may talk to ZooKeeper, the storage adapter's
methods, the adapter's watch callback (kazoo's thread) and the state machine's wait, and writes one
JSON line per call: ``{"name", "start", "end", "thread"}`` (wall-clock seconds). Whatever methods the
adapters have are wrapped, so it follows the app as it changes. Then it runs the app's own CLI.
"""

from __future__ import annotations

import functools
import inspect
import json
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from app import cli, machine
from app.adapters import fs_storage, kazoo_coordinator

_LOCAL = ("state", "session_id", "subscribe", "session_timeout", "granted_session_timeout")
_lock = threading.Lock()
_out: Any = None


def _emit(name: str, start: float, end: float, **extra: Any) -> None:
    thread = threading.current_thread().name
    line = json.dumps({"name": name, "start": start, "end": end, "thread": thread, **extra})
    with _lock:
        _out.write(line + "\n")


def _wrap(owner: type, name: str, label: str, *, only_true: bool = False) -> None:
    original: Callable[..., Any] = getattr(owner, name)

    @functools.wraps(original)
    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.time()
        result = original(*args, **kwargs)
        if not only_true or result is True:
            _emit(label, start, time.time())
        return result

    setattr(owner, name, timed)


def _trace_transitions() -> None:
    original = machine.StateMachine._enter

    def enter(self: Any, to: Any, previous: Any, reason: str) -> None:
        start = time.time()
        original(self, to, previous, reason)
        _emit(f"enter {to}", start, time.time())

    machine.StateMachine._enter = enter  # type: ignore[method-assign]


def main() -> None:
    global _out  # noqa: PLW0603 - one trace file per process
    at = sys.argv.index("--trace-file")
    _out = open(sys.argv[at + 1], "a", buffering=1)  # noqa: SIM115 - lives as long as the process
    del sys.argv[at : at + 2]
    coordinator = kazoo_coordinator.KazooCoordinator
    for name, _member in inspect.getmembers(coordinator, inspect.isfunction):
        if not name.startswith("_") and name not in _LOCAL:
            _wrap(coordinator, name, f"zk.{name}")
    for name in ("_on_watch",):
        if hasattr(coordinator, name):
            _wrap(coordinator, name, "watch_fired")
    storage = fs_storage.DirectoryStorage
    for name in ("begin_term", "write", "retain"):
        if hasattr(storage, name):
            _wrap(storage, name, f"storage.{name}")
    # A wait that returns True was woken (a watch, a connection change, a signal).
    _wrap(machine.Context, "wait_until", "woken", only_true=True)
    _trace_transitions()
    cli.main()


if __name__ == "__main__":
    main()
