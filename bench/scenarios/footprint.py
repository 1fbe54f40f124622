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

from bench.common import cpu_seconds, ms, num, pss_bytes, rss_bytes, run_seconds, summary, table
from bench.fleet import APP, KAZOO, Group, app_log_events, child_env
from bench.scenarios import RunContext
from bench.scenarios._skeleton import fleets, launched, make_result, no_plots, spread, spread_header, verdict
from tools import leader_files
from tools.leader_files import parse_time
from tools.replicas import Process
from tools.waiting import wait_for

NAME = "footprint"
TITLE = "5. Footprint: idle replica and leader (memory, CPU), start to first attempt, import time"
IMPORT_RE = re.compile(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)")
DEFAULTS = {
    "leader-timeout": "10s",
    "attempter-timeout": "10s",
    "zk-session-timeout": "10s",
    "storage-capacity": "10",
}
ORDER = ("p50", "min", "max")  # the start-up table's columns


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
            return parse_time(event["time"])
    return None


def _first_line_time(log_path: Path) -> float | None:
    events = app_log_events(log_path)
    return parse_time(events[0]["time"]) if events else None


def _startups(
    ctx: RunContext, app: Group, starts: int, result: dict[str, Any], startup: list[dict[str, float]]
) -> tuple[Process, Process | None]:
    """Spawn the app's leader (its spawn -> first file into ``result``), then ``starts`` followers one
    at a time while it leads, each timed from its spawn to ``Init -> Attempter`` (into ``startup``)
    and stopped but the last. Returns the leader and the last follower, both still running."""
    leader = app.spawn("app-leader")
    first = wait_for(lambda: leader_files.newest(app.file_dir), 30.0, "the first leader file")
    result["first_leader"] = {
        "to_first_file_s": first.written_at - leader.spawned_at,
        "to_attempter_s": (_transition_time(leader.log_path, "Attempter") or 0) - leader.spawned_at,
    }
    follower = None
    for k in range(starts):
        follower = app.spawn(f"app-follower-{k}")
        t_att = wait_for(lambda f=follower: _transition_time(f.log_path, "Attempter"), 30.0, "Attempter")
        startup.append(
            {
                "to_first_log_line_s": (_first_line_time(follower.log_path) or t_att) - follower.spawned_at,
                "to_first_attempt_s": t_att - follower.spawned_at,
            }
        )
        if k < starts - 1:
            follower.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
            app.wait_exit(follower)
            time.sleep(ctx.rng.uniform(0.1, 0.3))
    return leader, follower


def _idle(watched: dict[str, Any], window: float) -> dict[str, Any]:
    """CPU (% of a core over ``window`` s) and, at its end, RSS and PSS of each watched contender."""
    cpu0 = {k: cpu_seconds(c.pid) or 0.0 for k, c in watched.items()}
    run0 = {k: run_seconds(c.pid) or 0.0 for k, c in watched.items()}
    t0 = time.monotonic()
    time.sleep(window)
    span = time.monotonic() - t0
    return {
        k: {
            "cpu_percent": ((cpu_seconds(c.pid) or 0.0) - cpu0[k]) / span * 100,
            "run_percent": ((run_seconds(c.pid) or 0.0) - run0[k]) / span * 100,
            "rss_mib": (rss_bytes(c.pid) or 0) / 2**20,
            "pss_mib": (pss_bytes(c.pid) or 0) / 2**20,
        }
        for k, c in watched.items()
    }


def run(ctx: RunContext) -> dict[str, Any]:
    starts = ctx.pick_rounds(full=10, quick=2)
    window = ctx.sized(60.0, 2.0)
    started = time.time()
    result: dict[str, Any] = {}
    runs = ctx.sized(10, 2)
    result["importtime"] = _importtime(ctx.app_src, runs, "import app.cli")
    result["importtime_run_path"] = _importtime(ctx.app_src, runs, "import app.cli, app.wiring")
    result["process"] = _process_pairs(ctx.app_src, runs)
    startup: list[dict[str, float]] = []
    with ctx.zookeeper(NAME, tick_ms=2000) as zk:
        [app] = fleets(ctx, zk.address, NAME, [APP], 1, session_timeout=10.0, extra=DEFAULTS)
        [kz] = fleets(ctx, zk.address, NAME, [KAZOO], 2, session_timeout=10.0)
        with launched(app, kz, start=None):  # the app's replicas one by one, kazoo's after them
            leader, follower = _startups(ctx, app, starts, result, startup)
            kz.start()
            kz.wait_ready()
            kz_leader, _ = kz.leader()
            kz_follower = next(c for c in kz.contenders.values() if c is not kz_leader)
            time.sleep(ctx.sized(3.0, 1.0))
            watched = {
                "app leader": leader,
                "app idle follower": follower,
                "kazoo Election leader": kz_leader,
                "kazoo Election follower": kz_follower,
            }
            idle = _idle(watched, window)
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
    return make_result(
        ctx,
        started,
        config={"starts": starts, "idle_window_s": window, "zk_tick_ms": 2000, "app_flags": DEFAULTS},
        summary=result,
        rounds=startup,
    )


def _run(idle: dict[str, Any]) -> str:
    """The scheduler's figure (an older JSON has none)."""
    return num(idle["run_percent"], 4) if "run_percent" in idle else "-"


def report(result: dict[str, Any]) -> str:
    s = result["summary"]
    rows = [
        [k, num(v["rss_mib"], 1), num(v["pss_mib"], 1), num(v["cpu_percent"], 3), _run(v)]
        for k, v in s["idle"].items()
    ]
    text = table(
        f"{TITLE}\nidle over {s['idle_window_s']:g} s (product defaults: leader/attempter-timeout 10 s)",
        ["process", "RSS MiB", "PSS MiB", "CPU % of a core (10 ms ticks)", "on CPU % (schedstat)"],
        rows,
    )
    st, fl = s["startup"]["to_first_attempt_s"], s["startup"]["to_first_log_line_s"]
    imp, imp_run, proc = s["importtime"], s["importtime_run_path"], s["process"]
    text += "\n" + table(
        "start-up and import",
        ["measure", *spread_header(ORDER)],
        [
            ["spawn -> Init->Attempter (first attempt)", *spread(st, ORDER)],
            ["spawn -> first log line", *spread(fl, ORDER)],
            [
                "first replica: spawn -> first file as leader",
                ms(s["first_leader"]["to_first_file_s"]),
                "",
                "",
            ],
            ["-X importtime: import app.cli", *spread(imp["app_s"], ORDER)],
            ["-X importtime: import app.cli, app.wiring (run)", *spread(imp_run["app_s"], ORDER)],
            ["process: python -c 'import app.cli'", *spread(proc["import_app_cli_process_s"], ORDER)],
            ["process: python -c pass", *spread(proc["bare_python_process_s"], ORDER)],
        ],
    )
    heavy = ", ".join(
        f"{k} {v * 1000:.1f}" for k, v in sorted(imp_run["heaviest_s"].items(), key=lambda kv: -kv[1])[:8]
    )
    t = s["targets"]
    text += f"\nheaviest imports of the run path (ms, each package as imported from outside it): {heavy}"
    text += (
        f"\ntargets: idle < 40 MB: {verdict(t['idle_under_40mb'])}; idle CPU near zero: "
        f"{verdict(t['idle_cpu_near_zero'])}; start -> first attempt < 0.5 s (p50): "
        f"{verdict(t['start_to_first_attempt_under_0_5s'])}, (every start): "
        f"{verdict(t['start_to_first_attempt_max_under_0_5s'])}"
    )
    return text


plot = no_plots
