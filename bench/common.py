"""Shared pieces of the benchmark: statistics, tables, /proc readers, the machine and its load.

Standard library only. Times are seconds (floats) unless a name says otherwise; tables print
milliseconds where that reads better.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


# --------------------------------------------------------------------------
# statistics
# --------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between order statistics."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = math.ceil(rank)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))


def summary(values: Iterable[float]) -> dict[str, float]:
    """n, min, p50, p95, p99, max, mean of ``values`` (NaN for an empty list)."""
    data = [float(v) for v in values if v is not None and not math.isnan(v)]
    if not data:
        return {
            "n": 0,
            "min": math.nan,
            "p50": math.nan,
            "p95": math.nan,
            "p99": math.nan,
            "max": math.nan,
            "mean": math.nan,
        }
    return {
        "n": len(data),
        "min": min(data),
        "p50": percentile(data, 50),
        "p95": percentile(data, 95),
        "p99": percentile(data, 99),
        "max": max(data),
        "mean": statistics.fmean(data),
    }


def ms(value: float | None, digits: int = 1) -> str:
    """Seconds as a millisecond string for tables."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value * 1000:.{digits}f}"


def num(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan


def paired_ratio_summary(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
    """Summary of a[i] / b[i] over rounds measured back to back (A B A B ...)."""
    return summary([x / y for x, y in zip(a, b, strict=False) if y > 0])


# --------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain fixed-width table (first column left-aligned, the others right-aligned)."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [title]

    def fmt(row: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )

    lines.append(fmt(cells[0]))
    lines.append("  ".join("-" * w for w in widths))
    lines.extend(fmt(row) for row in cells[1:])
    return "\n".join(lines)


# --------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------


def proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (index 0 is field 3, ``state``)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (its own threads, not waited-for children)."""
    fields = proc_stat(pid)
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def run_seconds(pid: int) -> float | None:
    """Time on a CPU of all of a process's live threads, from the scheduler's own accounting
    (``/proc/PID/task/*/schedstat``, nanoseconds): it resolves what utime + stime, counted in 10 ms
    ticks, cannot (an idle replica's few hundred microseconds a second)."""
    total = 0
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return None
    for task in tasks:
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended meanwhile
    return total / 1e9


def _proc_kib(path: str, key: str) -> int | None:
    """The ``key:`` line of a /proc status-style file, in bytes (it is given in kB)."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def rss_bytes(pid: int) -> int | None:
    """Resident set size (VmRSS) of a process."""
    return _proc_kib(f"/proc/{pid}/status", "VmRSS:")


def pss_bytes(pid: int) -> int | None:
    """Proportional set size (shared pages split among their users), from smaps_rollup."""
    return _proc_kib(f"/proc/{pid}/smaps_rollup", "Pss:")


def _all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def descendants(root: int) -> set[int]:
    """``root`` and every process below it."""
    children: dict[int, list[int]] = {}
    for pid in _all_pids():
        fields = proc_stat(pid)
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(pid)
    found = {root}
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


# --------------------------------------------------------------------------
# the machine and its load
# --------------------------------------------------------------------------


def _read_cpu_total() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return float(total - idle), float(total)


def _cpu_by_pid() -> dict[int, int]:
    out: dict[int, int] = {}
    for pid in _all_pids():
        fields = proc_stat(pid)
        if fields is not None:
            out[pid] = int(fields[11]) + int(fields[12])
    return out


@dataclass
class LoadSample:
    t: float
    load1: float
    busy_cores: float  # CPUs busy over the last interval, all processes
    ours_cores: float  # ... of which this benchmark and its children (ZooKeeper, replicas)


@dataclass
class LoadMonitor:
    """Samples the machine's load once a second on a daemon thread.

    "ours" is this process and every descendant (ZooKeeper servers, replicas, baselines); the rest
    ("others") is what other users of the machine ran meanwhile, e.g. test suites.
    """

    interval: float = 1.0
    samples: list[LoadSample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="load-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        me = os.getpid()
        busy0, total0 = _read_cpu_total()
        per_pid0 = _cpu_by_pid()
        while not self._stop.wait(self.interval):
            busy1, total1 = _read_cpu_total()
            per_pid1 = _cpu_by_pid()
            ours = descendants(me)
            ours_jiffies = sum(per_pid1[p] - per_pid0.get(p, per_pid1[p]) for p in ours if p in per_pid1)
            elapsed_jiffies = (total1 - total0) / (os.cpu_count() or 1)
            cores = os.cpu_count() or 1
            busy = (busy1 - busy0) / (total1 - total0) * cores if total1 > total0 else 0.0
            ours_cores = ours_jiffies / elapsed_jiffies if elapsed_jiffies > 0 else 0.0
            self.samples.append(
                LoadSample(time.time(), os.getloadavg()[0], round(busy, 3), round(min(ours_cores, busy), 3))
            )
            busy0, total0, per_pid0 = busy1, total1, per_pid1

    def window(self, start: float, end: float) -> dict[str, Any]:
        """Load between two wall times: mean/max of load1, busy CPUs, ours and others."""
        picked = [s for s in self.samples if start <= s.t <= end + self.interval]
        if not picked:
            return {"samples": 0}
        others = [max(s.busy_cores - s.ours_cores, 0.0) for s in picked]
        return {
            "samples": len(picked),
            "load1_mean": round(statistics.fmean(s.load1 for s in picked), 2),
            "load1_max": round(max(s.load1 for s in picked), 2),
            "busy_cores_mean": round(statistics.fmean(s.busy_cores for s in picked), 2),
            "ours_cores_mean": round(statistics.fmean(s.ours_cores for s in picked), 2),
            "others_cores_mean": round(statistics.fmean(others), 2),
            "others_cores_max": round(max(others), 2),
        }


def _run_text(cmd: list[str]) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (done.stdout + done.stderr).strip()


def machine_info(app_src: Path) -> dict[str, Any]:
    """What the numbers were measured on: CPU, memory, kernel, Python, packages, Java, the app's commit."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_total = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_total = int(line.split()[1]) * 1024
    except OSError:
        pass
    versions: dict[str, str] = {}
    for dist in ("kazoo", "click", "prometheus-client", "python-json-logger", "matplotlib"):
        try:
            versions[dist] = version(dist)
        except Exception:
            versions[dist] = "absent"
    java = _run_text(["java", "-version"]).splitlines()
    pinned = app_src / ".commit"
    if pinned.is_file():  # exported with --app-ref
        commit, dirty = pinned.read_text().strip()[:7], ""
    else:
        commit = _run_text(["git", "-C", str(app_src), "rev-parse", "--short", "HEAD"])
        dirty = _run_text(["git", "-C", str(app_src), "status", "--porcelain", "--", "app"])
    return {
        "cpu_model": model,
        "cpus": os.cpu_count(),
        "memory_bytes": mem_total,
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "packages": versions,
        "java": java[0] if java else "",
        "app_src": str(app_src),
        "app_commit": commit or "unknown",
        "app_dirty": bool(dirty),
        "started_at": datetime.now().astimezone().isoformat(timespec="seconds"),
        "load_at_start": os.getloadavg(),
    }


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def clean_nan(value: Any) -> Any:
    """Replace NaN with None recursively (JSON has no NaN)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: clean_nan(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_nan(v) for v in value]
    return value
