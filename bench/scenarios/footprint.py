"""Scenario 5, footprint: memory and CPU of an idle replica and of the leader; start-up; import time.

* **Import time**: ``python -X importtime -c "import app.cli"``, the cumulative time of ``app.cli``
  and of the heaviest top-level packages it pulls in (median of the runs); and the whole process
  ``python -c "import app.cli"`` against ``python -c pass``, run in turn (A B A B ...).
* **Start to first attempt**: a replica is spawned while another leads; from the spawn (wall time
  just before ``Popen``) to the ``time`` of its log's ``Init -> Attempter`` transition line (its
  first look at the leader node follows at once). Also to its first log line (interpreter and
  imports) and, for the first replica, to its first file as leader.
* **Idle**: a leader and an idle follower with the product's defaults (``leader-timeout`` and
  ``attempter-timeout`` 10 s, session 10 s; ZooKeeper tick 2 s), and a kazoo ``Election`` leader and
  follower beside them as reference, watched over one window: CPU (utime+stime from /proc) and
  resident memory (RSS and PSS).
"""

from __future__ import annotations

import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import cpu_seconds, ms, num, parse_rfc3339, pss_bytes, rss_bytes, summary, table, wait_for
from bench.fleet import APP, KAZOO, Group, app_log_events, child_env, newest_leader_file
from bench.scenarios import RunContext

NAME = "footprint"
TITLE = "5. Footprint: idle replica and leader (memory, CPU), start to first attempt, import time"
IMPORT_RE = re.compile(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)")
DEFAULTS = {
    "leader-timeout": "10s",
    "attempter-timeout": "10s",
    "zk-session-timeout": "10s",
    "storage-capacity": "10",
}


def _attributable(stderr: str) -> tuple[float | None, dict[str, float]]:
    """The cumulative import time of the ``app`` modules imported, and per top-level package the
    time spent importing it from outside itself (lines nest by indentation; a module is printed
    after what it imports)."""
    lines = []
    for raw in stderr.splitlines():
        match = IMPORT_RE.match(raw)
        if match:
            lines.append(
                {
                    "cum": int(match.group(2)) / 1e6,
                    "depth": len(match.group(3)) // 2,
                    "name": match.group(4),
                    "parent": None,
                }
            )
    pending: list[dict[str, Any]] = []
    for line in lines:
        while pending and pending[-1]["depth"] > line["depth"]:
            child = pending.pop()
            child["parent"] = child["parent"] or line
        pending.append(line)
    tops = [line["cum"] for line in lines if line["parent"] is None and line["name"].split(".")[0] == "app"]
    total = sum(tops) if tops else None
    per: dict[str, float] = {}
    for line in lines:
        top = line["name"].split(".")[0]
        parent = line["parent"]
        if top != "app" and (parent is None or parent["name"].split(".")[0] != top):
            per[top] = per.get(top, 0.0) + line["cum"]
    return total, per


def _importtime(app_src: Path, runs: int, statement: str) -> dict[str, Any]:
    env = child_env(app_src)
    totals: list[float] = []
    packages: dict[str, list[float]] = {}
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", statement],
            cwd=app_src,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        total, per = _attributable(done.stderr)
        if total is not None:
            totals.append(total)
        for name, value in per.items():
            packages.setdefault(name, []).append(value)
    heaviest = sorted(((statistics.median(v), k) for k, v in packages.items()), reverse=True)[:10]
    return {"statement": statement, "app_s": summary(totals), "heaviest_s": {k: v for v, k in heaviest}}


def _process_pairs(app_src: Path, runs: int) -> dict[str, Any]:
    env = child_env(app_src)
    a, b = [], []
    for _ in range(runs):
        for cmd, out in (([sys.executable, "-c", "import app.cli"], a), ([sys.executable, "-c", "pass"], b)):
            t = time.perf_counter()
            subprocess.run(cmd, cwd=app_src, env=env, check=True)
            out.append(time.perf_counter() - t)
    return {
        "import_app_cli_process_s": summary(a),
        "bare_python_process_s": summary(b),
        "difference_p50_s": statistics.median(x - y for x, y in zip(a, b, strict=True)),
    }


def _transition_time(log_path: Path, to: str) -> float | None:
    for event in app_log_events(log_path):
        if event.get("event") == "transition" and event.get("to") == to:
            return parse_rfc3339(event["time"])
    return None


def _first_line_time(log_path: Path) -> float | None:
    events = app_log_events(log_path)
    return parse_rfc3339(events[0]["time"]) if events else None


def run(ctx: RunContext) -> dict[str, Any]:
    starts = ctx.pick_rounds(full=10, quick=2)
    window = 2.0 if ctx.quick else 60.0
    started = time.time()
    result: dict[str, Any] = {}
    runs = 2 if ctx.quick else 10
    result["importtime"] = _importtime(ctx.app_src, runs, "import app.cli")
    result["importtime_run_path"] = _importtime(ctx.app_src, runs, "import app.cli, app.wiring")
    result["process"] = _process_pairs(ctx.app_src, runs)
    startup: list[dict[str, float]] = []
    idle: dict[str, Any] = {}
    with ctx.zookeeper(NAME, tick_ms=2000) as zk:
        app = Group(
            APP,
            1,
            zk.address,
            f"/bench/{NAME}/app",
            ctx.workdir / NAME / "app",
            ctx.app_src,
            session_timeout=10.0,
            extra=DEFAULTS,
        )
        kz = Group(
            KAZOO,
            2,
            zk.address,
            f"/bench/{NAME}/kazoo",
            ctx.workdir / NAME / "kazoo",
            ctx.app_src,
            session_timeout=10.0,
        )
        try:
            leader = app.spawn("app-leader")
            first = wait_for(lambda: newest_leader_file(app.file_dir), 30.0, "the first leader file")
            result["first_leader"] = {
                "to_first_file_s": first.written_at - leader.spawned_at,
                "to_attempter_s": (_transition_time(leader.log_path, "Attempter") or 0) - leader.spawned_at,
            }
            follower = None
            for k in range(starts):
                follower = app.spawn(f"app-follower-{k}")
                t_att = wait_for(
                    lambda f=follower: _transition_time(f.log_path, "Attempter"), 30.0, "Attempter"
                )
                startup.append(
                    {
                        "to_first_log_line_s": (_first_line_time(follower.log_path) or t_att)
                        - follower.spawned_at,
                        "to_first_attempt_s": t_att - follower.spawned_at,
                    }
                )
                if k < starts - 1:
                    follower.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
                    app.wait_exit(follower)
                    time.sleep(ctx.rng.uniform(0.1, 0.3))
            kz.start()
            kz.wait_ready()
            kz_leader, _ = kz.leader()
            kz_follower = next(c for c in kz.contenders.values() if c is not kz_leader)
            time.sleep(1.0 if ctx.quick else 3.0)
            watched = {
                "app leader": leader,
                "app idle follower": follower,
                "kazoo Election leader": kz_leader,
                "kazoo Election follower": kz_follower,
            }
            cpu0 = {k: cpu_seconds(c.pid) or 0.0 for k, c in watched.items()}
            t0 = time.monotonic()
            time.sleep(window)
            span = time.monotonic() - t0
            for k, c in watched.items():
                idle[k] = {
                    "cpu_percent": ((cpu_seconds(c.pid) or 0.0) - cpu0[k]) / span * 100,
                    "rss_mib": (rss_bytes(c.pid) or 0) / 2**20,
                    "pss_mib": (pss_bytes(c.pid) or 0) / 2**20,
                }
        finally:
            app.stop()
            kz.stop()
    result["startup"] = {
        "to_first_attempt_s": summary(s["to_first_attempt_s"] for s in startup),
        "to_first_log_line_s": summary(s["to_first_log_line_s"] for s in startup),
        "starts": startup,
    }
    result["idle"] = idle
    result["idle_window_s"] = window
    app_idle = idle["app idle follower"]
    result["targets"] = {
        "idle_under_40mb": app_idle["rss_mib"] < 40 * 10**6 / 2**20,
        "idle_cpu_near_zero": app_idle["cpu_percent"] < 0.5,
        "start_to_first_attempt_under_0_5s": result["startup"]["to_first_attempt_s"]["p50"] < 0.5,
        "start_to_first_attempt_max_under_0_5s": result["startup"]["to_first_attempt_s"]["max"] < 0.5,
    }
    return {
        "config": {"starts": starts, "idle_window_s": window, "zk_tick_ms": 2000, "app_flags": DEFAULTS},
        "summary": result,
        "load": ctx.note_window(started),
        "rounds": startup,
    }


def report(result: dict[str, Any]) -> str:
    s = result["summary"]
    rows = [
        [k, num(v["rss_mib"], 1), num(v["pss_mib"], 1), num(v["cpu_percent"], 3)]
        for k, v in s["idle"].items()
    ]
    text = table(
        f"{TITLE}\nidle over {s['idle_window_s']:g} s (product defaults: leader/attempter-timeout 10 s)",
        ["process", "RSS MiB", "PSS MiB", "CPU % of a core"],
        rows,
    )
    st, fl = s["startup"]["to_first_attempt_s"], s["startup"]["to_first_log_line_s"]
    imp, imp_run, proc = s["importtime"], s["importtime_run_path"], s["process"]
    text += "\n" + table(
        "start-up and import",
        ["measure", "p50 ms", "min ms", "max ms"],
        [
            ["spawn -> Init->Attempter (first attempt)", ms(st["p50"]), ms(st["min"]), ms(st["max"])],
            ["spawn -> first log line", ms(fl["p50"]), ms(fl["min"]), ms(fl["max"])],
            [
                "first replica: spawn -> first file as leader",
                ms(s["first_leader"]["to_first_file_s"]),
                "",
                "",
            ],
            [
                "-X importtime: import app.cli",
                ms(imp["app_s"]["p50"]),
                ms(imp["app_s"]["min"]),
                ms(imp["app_s"]["max"]),
            ],
            [
                "-X importtime: import app.cli, app.wiring (run)",
                ms(imp_run["app_s"]["p50"]),
                ms(imp_run["app_s"]["min"]),
                ms(imp_run["app_s"]["max"]),
            ],
            [
                "process: python -c 'import app.cli'",
                ms(proc["import_app_cli_process_s"]["p50"]),
                ms(proc["import_app_cli_process_s"]["min"]),
                ms(proc["import_app_cli_process_s"]["max"]),
            ],
            [
                "process: python -c pass",
                ms(proc["bare_python_process_s"]["p50"]),
                ms(proc["bare_python_process_s"]["min"]),
                ms(proc["bare_python_process_s"]["max"]),
            ],
        ],
    )
    heavy = ", ".join(
        f"{k} {v * 1000:.1f}" for k, v in sorted(imp_run["heaviest_s"].items(), key=lambda kv: -kv[1])[:8]
    )
    t = s["targets"]
    text += f"\nheaviest imports of the run path (ms, each package as imported from outside it): {heavy}"
    text += (
        f"\ntargets: idle < 40 MB: {'met' if t['idle_under_40mb'] else 'MISSED'}; idle CPU near zero: "
        f"{'met' if t['idle_cpu_near_zero'] else 'MISSED'}; start -> first attempt < 0.5 s (p50): "
        f"{'met' if t['start_to_first_attempt_under_0_5s'] else 'MISSED'}, (every start): "
        f"{'met' if t['start_to_first_attempt_max_under_0_5s'] else 'MISSED'}"
    )
    return text


def plot(result: dict[str, Any], directory: Path) -> list[Path]:
    return []
