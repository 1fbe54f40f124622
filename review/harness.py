"""Shared pieces for the --exec review scripts: a real ZooKeeper, relays, replicas, heartbeat analysis."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.proxy import Relay  # noqa: E402
from tools.localzk import LocalZooKeeper  # noqa: E402

PY = str(REPO / ".venv/bin/python")
HB = str(REPO / "review/hb.py")


def boot() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def wait_for(pred, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class Replica:
    def __init__(self, name, zk, work: Path, command, *, session="4s", stop="1s", shutdown="5s", extra=(),
                 stderr_pipe=False):
        self.name = name
        self.log = work / f"{name}.log"
        (work / "files").mkdir(exist_ok=True)
        args = [PY, "-m", "app", "run", "--zk-servers", zk, "--identity", name,
                "--file-dir", str(work / "files"), "--zk-session-timeout", session,
                "--exec-stop-timeout", stop, "--shutdown-timeout", shutdown,
                "--attempter-timeout", "1s", "--http-address", "127.0.0.1:0", "--log-format", "json",
                *extra, "--", *command]
        self.pipe_w = None
        if stderr_pipe:
            r, w = os.pipe()
            self.pipe_w = w
            self._draining = threading.Event()
            self._draining.set()
            self.proc = subprocess.Popen(args, cwd=REPO, stdout=w, stderr=w, stdin=subprocess.DEVNULL)
            threading.Thread(target=self._drain, args=(r,), daemon=True).start()
        else:
            self._fh = open(self.log, "ab")
            self.proc = subprocess.Popen(args, cwd=REPO, stdout=self._fh, stderr=self._fh, stdin=subprocess.DEVNULL)

    def _drain(self, r):
        with open(self.log, "ab") as out:
            while True:
                self._draining.wait()
                data = os.read(r, 65536)
                if not data:
                    return
                out.write(data)
                out.flush()

    def stall_output(self):
        """Stop reading election's stdout/stderr and fill the pipe: its next write blocks."""
        self._draining.clear()
        time.sleep(0.2)
        # A file description of our own (O_NONBLOCK is shared by a description: never set it on the
        # one election writes to).
        filler = os.open(f"/proc/self/fd/{self.pipe_w}", os.O_WRONLY | os.O_NONBLOCK)
        n = 0
        with contextlib.suppress(BlockingIOError):
            while True:
                n += os.write(filler, b"#" * 4096)
        os.close(filler)
        return n

    def unstall_output(self):
        self._draining.set()

    def events(self):
        out = []
        try:
            text = self.log.read_text(errors="replace")
        except FileNotFoundError:
            return out
        for line in text.splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
        return out

    def has(self, event):
        return any(e.get("event") == event for e in self.events())

    def kill(self):
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        self.proc.wait()


def heartbeats(d: Path):
    """{file: (first, last, epoch, identity, pgid, pid, role)}"""
    res = {}
    for p in sorted(d.iterdir()):
        lines = p.read_text().splitlines()
        if not lines:
            continue
        _, t0, epoch, ident = lines[0].split()
        stamps = [float(x) for x in lines[1:] if x and not x.startswith("start")]
        role, pgid, pid = p.name.split("-")
        res[p.name] = (float(t0), stamps[-1] if stamps else float(t0), int(epoch) if epoch.isdigit() else epoch,
                       ident, int(pgid), int(pid), role)
    return res


def overlaps(d: Path):
    hb = heartbeats(d)
    items = list(hb.items())
    bad = []
    for i, (a, va) in enumerate(items):
        for b, vb in items[i + 1:]:
            if va[4] == vb[4]:
                continue  # same process group: one term
            lo, hi = max(va[0], vb[0]), min(va[1], vb[1])
            if lo < hi:
                bad.append((a, b, round(hi - lo, 3)))
    return bad


def pids_alive(pids):
    alive = []
    for pid in pids:
        try:
            os.kill(pid, 0)
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(") ")[1].split()[0] != "Z":
                    alive.append(pid)
        except (ProcessLookupError, FileNotFoundError):
            pass
    return alive


def zk(work: Path, tick_ms=200):
    return LocalZooKeeper(work / "zk", tick_ms=tick_ms)
