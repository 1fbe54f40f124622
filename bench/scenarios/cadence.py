"""Scenario 6, cadence: the leader's write period error and drift over 1,000 ticks.

One app replica leads alone with ``leader-timeout`` 10 ms and then 100 ms (``storage-capacity``
above the tick count, so every file stays). It runs under ``bench/baselines/traced_replica.py``
(the app's own CLI with its ZooKeeper and storage calls timed to a file, ~20 us per call), which
gives the grid's origin (the term's storage ready, after which the Leader state starts its grid)
and splits each tick. From the files' ``written_at`` (stamped just before each write):

* interval error: (t[i] - t[i-1]) - (slot[i] - slot[i-1]) x period;
* lateness: t[i] - (origin + slot[i] x period), where slot[i] = floor((t[i] - origin) / period)
  (a grid leader never writes before its slot; an empty slot is a missed tick);
* drift: the least-squares slope of lateness over the slot (ms per 1,000 ticks), and the median
  lateness of the last 100 ticks minus that of the first 100;
* breakdown (from the trace): waking up after the slot, the confirming ZooKeeper read, the write
  itself (fsyncs), and for ticks over 5 ms late, which of these was the largest.

Baseline in the same run: a loop that writes with the same storage code and then sleeps one period
(``bench/baselines/naive_sleeper.py``; its write i is tick i, its origin its first write); it does
not read ZooKeeper. The leader's CPU over the run is read from /proc.
"""

from __future__ import annotations

import itertools
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import cpu_seconds, ms, num, summary, table, wait_for
from bench.fleet import (
    BASELINES,
    TRACED_APP,
    Group,
    child_env,
    files_of_epoch,
    newest_leader_file,
    read_trace,
    trace_path,
)
from bench.scenarios import RunContext

NAME = "cadence"
TITLE = "6. Cadence: the leader's write period error and drift"
PERIODS = (0.010, 0.100)


def analyse(times: list[float], period: float, origin: float | None = None) -> dict[str, Any]:
    """Period error, lateness and drift of write times ``times``.

    With ``origin`` (the app: where its grid starts) each write belongs to the slot it falls in,
    ``floor((t - origin) / period)``: a grid leader never writes before its slot, and a slot with no
    write is a missed tick. Without (the sleep loop, which has no grid) write i is tick i.
    """
    if origin is None:
        slots = list(range(len(times)))
        zero = times[0]
    else:
        slots = []
        for t in times:
            slot = math.floor((t - origin) / period)
            slots.append(max(slot, slots[-1] + 1) if slots else slot)
        zero = origin
    interval_err = [
        (cur - prev) - (s1 - s0) * period
        for (prev, cur), (s0, s1) in zip(itertools.pairwise(times), itertools.pairwise(slots), strict=True)
    ]
    late = [t - zero - s * period for t, s in zip(times, slots, strict=True)]
    mean_s = statistics.fmean(slots)
    mean_l = statistics.fmean(late)
    var = sum((s - mean_s) ** 2 for s in slots)
    slope = sum((s - mean_s) * (lv - mean_l) for s, lv in zip(slots, late, strict=True)) / var if var else 0.0
    k = max(1, min(100, len(late) // 4))
    return {
        "writes": len(times),
        "missed_ticks": slots[-1] - slots[0] + 1 - len(times),
        "interval_abs_error_s": summary(abs(e) for e in interval_err),
        "interval_error_s": summary(interval_err),
        "lateness_s": summary(late),
        "drift_s_per_1000_ticks": slope * 1000,
        "drift_end_minus_start_s": statistics.median(late[-k:]) - statistics.median(late[:k]),
        "lateness_series_ms": [round(x * 1000, 3) for x in late],
    }


def breakdown(trace: list[dict[str, Any]], origin: float, period: float, count: int) -> dict[str, Any]:
    """Each tick's lateness split into: the confirming read still running at the slot, and the rest
    (waking up after the slot, or after the read); plus the read's own time and how far ahead of the
    slot it was sent (negative: after it, as up to e40148a, which read at the slot)."""
    confirms = [e for e in trace if e["name"] == "zk.leader" and e["start"] >= origin]
    writes = [e for e in trace if e["name"] == "storage.write" and e["start"] >= origin][:count]
    wake, overrun, confirm, ahead, write = [], [], [], [], []
    culprits = {"wake-up": 0, "confirm read": 0}
    ci = 0
    for w in writes:
        while ci + 1 < len(confirms) and confirms[ci + 1]["end"] <= w["start"]:
            ci += 1
        c = confirms[ci] if confirms and confirms[ci]["end"] <= w["start"] else None
        slot_at = origin + math.floor((w["start"] - origin) / period) * period
        write.append(w["end"] - w["start"])
        if c is None:
            continue
        overrun.append(max(c["end"] - slot_at, 0.0))
        wake.append(w["start"] - max(slot_at, c["end"]))
        confirm.append(c["end"] - c["start"])
        ahead.append(slot_at - c["start"])
        if w["start"] - slot_at > 0.005:
            culprits["confirm read" if overrun[-1] > wake[-1] else "wake-up"] += 1
    return {
        "wake_after_slot_s": summary(wake),
        "confirm_overrun_s": summary(overrun),
        "confirm_read_s": summary(confirm),
        "confirm_ahead_s": summary(ahead),
        "write_s": summary(write),
        "ticks_over_5ms_late_by_main_cause": culprits,
    }


def _app_run(ctx: RunContext, zk_address: str, period: float, ticks: int) -> dict[str, Any]:
    name = f"app-{int(period * 1000)}ms"
    group = Group(
        TRACED_APP, 1, zk_address, f"/bench/{NAME}/{name}", ctx.workdir / NAME / name, ctx.app_src,
        extra={"leader-timeout": f"{int(period * 1000)}ms", "storage-capacity": str(ticks * 2)},
    )  # fmt: skip
    try:
        leader = group.spawn(f"{name}")
        first = wait_for(lambda: newest_leader_file(group.file_dir), 30.0, "the first file")
        cpu0, t0 = cpu_seconds(leader.pid) or 0.0, time.monotonic()
        wait_for(
            lambda: len(list(group.file_dir.glob("leader-*.json"))) >= ticks, period * ticks * 3 + 30,
            f"{ticks} files", interval=min(0.5, period * 10),
        )  # fmt: skip
        cpu = ((cpu_seconds(leader.pid) or 0.0) - cpu0) / (time.monotonic() - t0)
    finally:
        group.stop()
    files = files_of_epoch(group.file_dir, first.epoch)[:ticks]
    trace = read_trace(trace_path(group, leader.identity))
    # The grid starts when the term's storage is ready (Leader: begin_term, then start = now).
    begun = [e["end"] for e in trace if e["name"] == "storage.begin_term"]
    entered = [e["end"] for e in trace if e["name"] == "enter Leader"]
    origin = begun[0] if begun else entered[0]
    out = analyse([f.written_at for f in files], period, origin=origin)
    out["breakdown"] = breakdown(trace, origin, period, ticks)
    out["leader_cpu_percent"] = cpu * 100
    return out


def _naive_run(ctx: RunContext, period: float, ticks: int) -> dict[str, Any]:
    directory = ctx.workdir / NAME / f"naive-{int(period * 1000)}ms"
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            str(BASELINES / "naive_sleeper.py"),
            "--file-dir",
            str(directory),
            "--period",
            str(period),
            "--ticks",
            str(ticks),
        ],
        cwd=ctx.app_src,
        env=child_env(ctx.app_src),
        check=True,
        timeout=period * ticks * 5 + 60,
    )
    files = files_of_epoch(directory, 1)
    return analyse([f.written_at for f in files], period)


def _targets(out: dict[str, Any]) -> dict[str, dict[str, bool]]:
    """p99 of the interval error under 5 ms; no cumulative drift: lateness does not grow, i.e. its
    slope is under one period per 1,000 ticks and its end differs from its start by under half one."""
    verdict = {}
    for key, v in out.items():
        if not isinstance(v, dict) or "app" not in v:
            continue
        app, period = v["app"], v["period_s"]
        verdict[key] = {
            "p99_interval_error_under_5ms": app["interval_abs_error_s"]["p99"] < 0.005,
            "no_cumulative_drift": abs(app["drift_s_per_1000_ticks"]) < period
            and abs(app["drift_end_minus_start_s"]) < period / 2,
        }
    return verdict


def run(ctx: RunContext) -> dict[str, Any]:
    ticks = ctx.pick_rounds(full=1000, quick=100)
    started = time.time()
    out: dict[str, Any] = {}
    with ctx.zookeeper(NAME) as zk:
        for period in PERIODS:
            n = ticks if period < 0.05 or not ctx.quick else max(10, ticks // 10)
            out[f"{int(period * 1000)}ms"] = {
                "period_s": period,
                "ticks": n,
                "app": _app_run(ctx, zk.address, period, n),
                "naive_sleep": _naive_run(ctx, period, n),
            }
    targets = _targets(out)
    return {
        "config": {"periods_s": list(PERIODS), "ticks": ticks},
        "summary": {**out, "targets": targets},
        "load": ctx.note_window(started),
        "rounds": [],
    }


def report(result: dict[str, Any]) -> str:
    s = result["summary"]
    rows = []
    for key in (f"{int(p * 1000)}ms" for p in PERIODS):
        for who in ("app", "naive_sleep"):
            r = s[key][who]
            ie, la = r["interval_abs_error_s"], r["lateness_s"]
            rows.append(
                [
                    f"{'election' if who == 'app' else 'sleep loop'} @ {key}",
                    r["writes"],
                    ms(ie["p50"], 2),
                    ms(ie["p99"], 2),
                    ms(ie["max"], 1),
                    ms(la["p50"], 2),
                    ms(la["p99"], 2),
                    ms(r["drift_s_per_1000_ticks"], 1),
                    ms(r["drift_end_minus_start_s"], 1),
                    r["missed_ticks"],
                    num(r.get("leader_cpu_percent"), 1) if who == "app" else "-",
                ]
            )
    text = table(
        TITLE + " (|err|: interval error; late: behind the grid)",
        [
            "leader",
            "writes",
            "|err| p50 ms",
            "|err| p99 ms",
            "|err| max ms",
            "late p50 ms",
            "late p99 ms",
            "drift ms/1000",
            "end-start ms",
            "missed",
            "CPU %",
        ],
        rows,
    )
    for key in (f"{int(p * 1000)}ms" for p in PERIODS):
        b = s[key]["app"].get("breakdown")
        if b:

            def trio(name: str, b: dict[str, Any] = b) -> str:
                return "/".join(ms(b[name][q], 2) for q in ("p50", "p99", "max"))

            text += (
                f"\nelection @ {key}, per tick p50/p99/max ms: confirm read sent {trio('confirm_ahead_s')} "
                f"before the slot, took {trio('confirm_read_s')}, overran the slot by "
                f"{trio('confirm_overrun_s')}; wake-up after slot or read {trio('wake_after_slot_s')}; "
                f"write {trio('write_s')}; ticks > 5 ms late by main cause: "
                f"{b['ticks_over_5ms_late_by_main_cause']}"
            )
    verdicts = []
    for key, t in _targets(s).items():
        verdicts.append(
            f"{key}: p99 < 5 ms {'met' if t['p99_interval_error_under_5ms'] else 'MISSED'}, "
            f"no drift {'met' if t['no_cumulative_drift'] else 'MISSED'}"
        )
    return text + "\ntargets: " + "; ".join(verdicts)


def plot(result: dict[str, Any], directory: Path) -> list[Path]:
    from bench import plots  # noqa: PLC0415 - matplotlib is optional

    s = result["summary"]
    panels = []
    for key in (f"{int(p * 1000)}ms" for p in PERIODS):
        panels.append(
            (
                f"leader-timeout {key}",
                {
                    "election (fixed grid)": s[key]["app"]["lateness_series_ms"],
                    "write-then-sleep loop": s[key]["naive_sleep"]["lateness_series_ms"],
                },
            )
        )
    return [
        plots.series_over_index(
            directory / "cadence.png",
            panels,
            title="Cadence: each write's distance from the fixed grid (drift shows as a slope)",
            xlabel="tick",
            ylabel="lateness vs grid, ms",
        )
    ]
