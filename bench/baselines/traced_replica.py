"""``election run`` with a timeline: every ZooKeeper call, storage call and wake-up timed to a file.

    PYTHONPATH=<app>:<repo> python bench/baselines/traced_replica.py --trace-file F run ...

Not a baseline: the profiler behind ``python -m bench trace``. It wraps, before the app starts, every
public method of the coordination adapter that may talk to ZooKeeper, the storage adapter's
methods, the adapter's watch callback (kazoo's thread) and the state machine's wait, and writes one
JSON line per call: ``{"name", "start", "end", "thread"}`` (wall-clock seconds). Whatever methods the
adapters have are wrapped, so it follows the app as it changes. Garbage collections are spans too
(``gc``, with their ``generation``). Then it runs the app's own CLI.

Knobs, from the environment, each one suspected cause of the hand-over's tail turned off or back on
(``python -m bench trace`` runs them as variants beside the product):

* ``BENCH_TRACE_HTTP_POLL=S``: the HTTP selector thread wakes at least every S seconds (before
  issue 13 it polled every 0.05 s; now it sleeps until a socket or a deadline needs it);
* ``BENCH_TRACE_GC=off``: the garbage collector disabled (``gc.disable()``) once the app is imported;
* ``BENCH_TRACE_SWITCH_INTERVAL=S``: ``sys.setswitchinterval(S)`` (the interpreter's default is
  0.005 s: how long a thread that wants the GIL waits before it asks the holder to let go);
* ``BENCH_TRACE_NO_END_RECORD=1``: the term's end is not written to the history (the request the
  old leader sends before its session's close).
"""

from __future__ import annotations

import functools
import gc
import inspect
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from app import cli, http, machine
from app.adapters import fs_fence, fs_storage, kazoo_coordinator

_LOCAL = ("state", "session_id", "subscribe", "session_timeout", "granted_session_timeout")
_lock = threading.Lock()
_out: Any = None


def _emit(name: str, start: float, end: float, **extra: Any) -> None:
    thread = threading.current_thread().name
    line = json.dumps({"name": name, "start": start, "end": end, "thread": thread, **extra})
    with _lock:
        _out.write(line + "\n")


def _wrap(owner: type, name: str, label: str, *, only_true: bool = False) -> None:
    static = inspect.getattr_static(owner, name)
    original: Callable[..., Any] = getattr(owner, name)

    @functools.wraps(original)
    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.time()
        result = original(*args, **kwargs)
        if not only_true or result is True:
            _emit(label, start, time.time())
        return result

    if isinstance(static, staticmethod):
        setattr(owner, name, staticmethod(timed))
    elif isinstance(static, classmethod):
        setattr(owner, name, classmethod(lambda _cls, *a, **k: timed(*a, **k)))
    else:
        setattr(owner, name, timed)


def _trace_transitions() -> None:
    original = machine.StateMachine._enter

    def enter(self: Any, to: Any, previous: Any, reason: str) -> None:
        start = time.time()
        original(self, to, previous, reason)
        _emit(f"enter {to}", start, time.time())

    machine.StateMachine._enter = enter  # type: ignore[method-assign]


def _trace_gc() -> None:
    began: dict[int, float] = {}

    def callback(phase: str, info: dict[str, Any]) -> None:
        generation = int(info.get("generation", -1))
        if phase == "start":
            began[generation] = time.time()
        elif generation in began:
            _emit("gc", began.pop(generation), time.time(), generation=generation)

    gc.callbacks.append(callback)


def _knobs() -> None:
    poll = os.environ.get("BENCH_TRACE_HTTP_POLL")
    if poll:
        cap = float(poll)
        original = http.HttpServer._select_timeout

        def polling(self: Any, now: float) -> float:
            timeout = original(self, now)
            return cap if timeout is None else min(timeout, cap)

        http.HttpServer._select_timeout = polling  # type: ignore[method-assign]
    if os.environ.get("BENCH_TRACE_GC") == "off":
        gc.disable()
    if os.environ.get("BENCH_TRACE_NO_END_RECORD") == "1":
        kazoo_coordinator.KazooCoordinator.end_term_record = lambda *_a, **_k: None  # type: ignore[method-assign]
    switch = os.environ.get("BENCH_TRACE_SWITCH_INTERVAL")
    if switch:
        sys.setswitchinterval(float(switch))


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
    # Inside a write: the temporary file (write + fsync), the directory's listing (a term's first
    # write), the fence record read and written (write + fsync + rename), the link, the directory's
    # fsync. (The lock's wait is the gap between them.)
    for owner, name, label in (
        (storage, "_write_locked", "fs.temp_file"),
        (storage, "_list", "fs.list"),
        (storage, "_publish", "fs.link"),
        (storage, "_fsync_directory", "fs.dir_fsync"),
        (fs_fence.FileFence, "read", "fs.fence_read"),
        (fs_fence.FileFence, "store", "fs.fence_store"),
    ):
        if hasattr(owner, name):
            _wrap(owner, name, label)
    # A wait that returns True was woken (a watch, a connection change, a signal).
    _wrap(machine.Context, "wait_until", "woken", only_true=True)
    _trace_transitions()
    _trace_gc()
    _knobs()
    cli.main()


if __name__ == "__main__":
    main()
