"""A stand-in for the user's singleton under ``election run --exec``: it records that it runs, and when.

Run by ``election`` (``--exec "python tests/e2e/heartbeat_child.py --dir DIR [options]"``), each
process writes one file of its own in ``DIR``, one JSON object per line, each line a single
``write`` to a descriptor opened with ``O_APPEND`` (so nothing sits in a buffer when it is killed):

* ``{"ev": "start", "pid", "pgid", "ppid", "role", "epoch", "identity", "election_path", "lease",
  "boot", "wall"}`` first (``role`` is "child" or "grandchild"; the ``ELECTION_*`` values as given);
* ``{"ev": "beat", "boot", "wall"}`` every 10 ms while it runs;
* ``{"ev": "term", ...}`` when SIGTERM arrives; ``{"ev": "exit", "code", ...}`` when it exits by
  itself (never written when it is killed).

``boot`` is ``CLOCK_BOOTTIME`` (one clock for every process on the machine, never set back), so the
beats of different children compare directly: the no-overlap rule is that every process of a term has
written its last beat before any process of the next term writes its first. ``wall`` is
``time.time()``, to compare with the times a test or ZooKeeper took.

Options: ``--ignore-term`` (trap SIGTERM and go on beating: only SIGKILL ends it), ``--stop-seconds
N`` (on SIGTERM, beat on for N seconds, then exit 0), ``--grandchild`` (fork a grandchild that beats
into a file of its own, with the same options), ``--exit CODE`` (exit at once with CODE after the
start line).

The readers (:class:`BeatLog`, :func:`read_processes`, :func:`terms`, :func:`overlaps`) are for the
tests; the script itself needs nothing but the standard library and starts in a few tens of
milliseconds.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BEAT = 0.01  # seconds between beats


def _now() -> dict[str, float]:
    return {"boot": time.clock_gettime(time.CLOCK_BOOTTIME), "wall": time.time()}


class _Recorder:
    """The per-process file: every record a single append."""

    def __init__(self, directory: Path, role: str) -> None:
        stamp = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        self.path = directory / f"hb-{stamp:020d}-{os.getpid()}.jsonl"
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        env = os.environ
        self.write(
            "start",
            pid=os.getpid(),
            pgid=os.getpgid(0),
            ppid=os.getppid(),
            role=role,
            epoch=env.get("ELECTION_EPOCH"),
            identity=env.get("ELECTION_IDENTITY"),
            election_path=env.get("ELECTION_ELECTION_PATH"),
            lease=env.get("ELECTION_LEASE_SECONDS"),
        )

    def write(self, event: str, **fields: Any) -> None:
        line = json.dumps({"ev": event, **fields, **_now()}, separators=(",", ":")) + "\n"
        os.write(self._fd, line.encode())


def _run(directory: Path, role: str, options: argparse.Namespace) -> int:
    stop_at: list[float] = []  # CLOCK_BOOTTIME at which to exit, once SIGTERM has come
    recorders: list[_Recorder] = []

    def on_term(_signum: int, _frame: object) -> None:
        if recorders:
            recorders[0].write("term", ignored=options.ignore_term)
        if not options.ignore_term and not stop_at:
            stop_at.append(time.clock_gettime(time.CLOCK_BOOTTIME) + options.stop_seconds)

    # Before anything else: a SIGTERM in the first milliseconds must not kill a child told to trap it.
    signal.signal(signal.SIGTERM, on_term)
    recorder = _Recorder(directory, role)
    recorders.append(recorder)
    if options.exit is not None:
        recorder.write("exit", code=options.exit)
        return int(options.exit)
    if options.grandchild and role == "child" and os.fork() == 0:
        return _run(directory, "grandchild", options)
    while True:
        recorder.write("beat")
        if stop_at and time.clock_gettime(time.CLOCK_BOOTTIME) >= stop_at[0]:
            recorder.write("exit", code=0)
            return 0
        time.sleep(BEAT)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, required=True, help="directory for the per-process files")
    parser.add_argument("--ignore-term", action="store_true", help="trap SIGTERM and beat on")
    parser.add_argument("--stop-seconds", type=float, default=0.0, help="beat on this long after SIGTERM")
    parser.add_argument("--grandchild", action="store_true", help="fork a grandchild that beats too")
    parser.add_argument("--exit", type=int, default=None, help="exit at once with this status")
    options = parser.parse_args(argv)
    options.dir.mkdir(parents=True, exist_ok=True)
    return _run(options.dir, "child", options)


# --------------------------------------------------------------------------------------------------
# readers, for the tests
# --------------------------------------------------------------------------------------------------


@dataclass
class Process:
    """What one child (or grandchild) recorded."""

    path: Path
    pid: int
    pgid: int
    role: str
    epoch: int | None
    identity: str | None
    election_path: str | None
    lease: float | None
    started: float  # CLOCK_BOOTTIME of the start line
    started_wall: float
    beats: list[float] = field(default_factory=list)  # CLOCK_BOOTTIME
    beats_wall: list[float] = field(default_factory=list)
    terms: list[float] = field(default_factory=list)  # CLOCK_BOOTTIME of each SIGTERM seen
    exit_code: int | None = None  # None: killed, or still running
    exited: float | None = None  # CLOCK_BOOTTIME of the exit line

    @property
    def first(self) -> float:
        return self.beats[0] if self.beats else self.started

    @property
    def last(self) -> float:
        return self.beats[-1] if self.beats else self.started

    @property
    def last_wall(self) -> float:
        return self.beats_wall[-1] if self.beats_wall else self.started_wall

    def describe(self) -> str:
        return f"{self.role} {self.pid} of {self.identity}@{self.epoch}"


def _apply(path: Path, process: Process | None, record: dict[str, Any]) -> Process | None:
    """``process`` after one more record of its file (a record before the start line is ignored)."""
    if record["ev"] == "start":
        epoch, lease = record.get("epoch"), record.get("lease")
        return Process(
            path=path,
            pid=int(record["pid"]),
            pgid=int(record["pgid"]),
            role=str(record["role"]),
            epoch=int(epoch) if epoch not in (None, "") else None,
            identity=record.get("identity"),
            election_path=record.get("election_path"),
            lease=float(lease) if lease not in (None, "") else None,
            started=float(record["boot"]),
            started_wall=float(record["wall"]),
        )
    if process is None:
        return None
    if record["ev"] == "beat":
        process.beats.append(float(record["boot"]))
        process.beats_wall.append(float(record["wall"]))
    elif record["ev"] == "term":
        process.terms.append(float(record["boot"]))
    elif record["ev"] == "exit":
        process.exit_code = int(record["code"])
        process.exited = float(record["boot"])
    return process


class BeatLog:
    """A directory of heartbeat files, read incrementally: each call parses only what was appended
    since the last (a soak polls it every 10 ms for minutes)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._files: dict[Path, tuple[int, bytes, Process | None]] = {}  # offset, partial line, process

    def processes(self) -> list[Process]:
        """Every process that recorded, in start order (the objects are updated in place)."""
        paths = sorted(self.directory.glob("hb-*.jsonl")) if self.directory.exists() else []
        for path in paths:
            offset, partial, process = self._files.get(path, (0, b"", None))
            try:
                with path.open("rb") as file:
                    file.seek(offset)
                    data = file.read()
            except FileNotFoundError:
                continue
            if not data:
                continue
            *lines, rest = (partial + data).split(b"\n")
            for line in lines:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                process = _apply(path, process, record)
            self._files[path] = (offset + len(data), rest, process)
        found = [process for _, _, process in self._files.values() if process is not None]
        return sorted(found, key=lambda p: p.started)


def read_processes(directory: Path) -> list[Process]:
    """Every process that recorded in ``directory``, in start order (read afresh)."""
    return BeatLog(directory).processes()


@dataclass
class Term:
    """One run of the work: a child and its descendants (its process group), and when they ran. A
    leader term has one run, or several one after another if it started its child again."""

    epoch: int | None
    identity: str | None
    processes: list[Process]

    @property
    def first(self) -> float:
        return min(p.first for p in self.processes)

    @property
    def last(self) -> float:
        return max(p.last for p in self.processes)

    @property
    def first_wall(self) -> float:
        return min(p.beats_wall[0] if p.beats_wall else p.started_wall for p in self.processes)

    @property
    def last_wall(self) -> float:
        return max(p.last_wall for p in self.processes)

    @property
    def child(self) -> Process:
        return next((p for p in self.processes if p.role == "child"), self.processes[0])


def terms(processes: list[Process]) -> list[Term]:
    """Processes grouped into runs (epoch, identity, process group), in the order they began."""
    grouped: dict[tuple[int | None, str | None, int], list[Process]] = {}
    for process in processes:
        grouped.setdefault((process.epoch, process.identity, process.pgid), []).append(process)
    found = [Term(epoch, identity, members) for (epoch, identity, _), members in grouped.items()]
    return sorted(found, key=lambda t: t.first)


def overlap_seconds(processes: list[Process]) -> float:
    """The longest time a run went on beating after the next run began (0: never)."""
    found = terms(processes)
    return max([0.0, *(older.last - newer.first for older, newer in itertools.pairwise(found))])


def overlaps(processes: list[Process]) -> list[str]:
    """Every breach of the no-overlap rule, in words (empty: none).

    In the order the runs began, each run's last beat (of any of its processes) must come before the
    next run's first; epochs never decrease from run to run, and an epoch belongs to one identity;
    a run has one child (the process ``election`` started)."""
    problems = []
    found = terms(processes)
    for term in found:
        children = [p for p in term.processes if p.role == "child"]
        if len(children) != 1:
            problems.append(
                f"epoch {term.epoch} of {term.identity}: {len(children)} children in one group "
                f"({', '.join(p.describe() for p in term.processes)})"
            )
    for older, newer in itertools.pairwise(found):
        if older.last >= newer.first:
            late = max(older.processes, key=lambda p: p.last)
            problems.append(
                f"{late.describe()} beat {older.last - newer.first:.3f}s after {newer.child.describe()} began"
            )
        if older.epoch is None or newer.epoch is None or newer.epoch < older.epoch:
            problems.append(f"epoch {newer.epoch} of {newer.identity} began after epoch {older.epoch}")
        elif newer.epoch == older.epoch and newer.identity != older.identity:
            problems.append(f"epoch {newer.epoch} ran under {older.identity} and {newer.identity}")
    return problems


if __name__ == "__main__":
    sys.exit(main())
