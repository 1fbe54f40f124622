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

The confirmation itself (the leader's ``zk.leader`` before each write: since 4ee930e a ``sync``
pipelined with the read) gets two same-run baselines:

* a probe (:func:`confirm_probe`) on the same server before the leaders run: one kazoo session
  alternating a plain ``get`` of a leader-sized node with ``sync`` + ``get`` pipelined as the
  adapter sends them, one pair every 10 ms, the order inside a pair alternating; the paired
  difference is what the sync adds to one confirmation;
* with ``--compare-app-ref REF`` (e.g. 4ff5fb0, the last commit whose confirmation was a plain
  read) the app at REF leads the same periods on the same server, after or before the app under
  test (the order alternates per period), with the same report.

``cadence-ensemble`` (``bench/scenarios/cadence_ensemble.py``) runs all of this against a follower
of a 3-member ensemble, where the sync costs a hop to the quorum leader.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import NodeExistsError

from bench.common import cpu_seconds, ms, num, summary, table
from bench.fleet import BASELINES, TRACED_APP, Group, child_env, read_trace, trace_path
from bench.scenarios import RunContext
from bench.scenarios._skeleton import alternate, make_result
from tools import leader_files
from tools.waiting import wait_for
from tools.zookeeper import four_letter_word

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


def paired_cost(plain: list[float], synced: list[float]) -> dict[str, Any]:
    """What ``synced[i]`` costs over ``plain[i]``, pair by pair (the two were measured back to
    back): the distributions of each, of the difference and of the ratio."""
    pairs = list(zip(plain, synced, strict=True))
    return {
        "get_s": summary(plain),
        "sync_get_s": summary(synced),
        "extra_s": summary(b - a for a, b in pairs),
        "ratio": summary(b / a for a, b in pairs if a > 0),
    }


PROBE_DATA = json.dumps({"identity": "probe-" + "x" * 40, "acquired_at": "2026-01-01T00:00:00.000000Z"})


def confirm_probe(address: str, samples: int, path: str, pause: float = 0.010) -> dict[str, Any]:
    """Round trips of the leader's confirmation on the server at ``address``, with and without sync.

    One session; ``samples`` pairs, each a plain ``get`` (with a watch, as the leader's) and a
    ``sync`` + ``get`` pipelined as the adapter sends them (the sync not waited for on its own,
    its reply checked after the read's), one request every ``pause`` seconds so that the server
    and the client are as idle between confirmations as a leader's are between ticks; the order
    inside a pair alternates so that neither always follows the other.
    """
    client = KazooClient(hosts=address, timeout=10.0)
    client.start(timeout=30)
    try:
        client.ensure_path(path.rsplit("/", 1)[0])
        with contextlib.suppress(NodeExistsError):
            client.create(path, PROBE_DATA.encode())

        def plain() -> float:
            t0 = time.perf_counter()
            client.get_async(path, watch=lambda _event: None).get(timeout=10)
            return time.perf_counter() - t0

        def synced() -> float:
            t0 = time.perf_counter()
            pending = client.sync_async(path)
            client.get_async(path, watch=lambda _event: None).get(timeout=10)
            pending.get(timeout=10)
            return time.perf_counter() - t0

        got: list[float] = []
        both: list[float] = []
        for i in range(samples):
            for measure in (plain, synced) if i % 2 == 0 else (synced, plain):
                time.sleep(pause)
                (got if measure is plain else both).append(measure())
        mode = ""
        with contextlib.suppress(Exception):
            mode = four_letter_word(address, "srvr").split("Mode:", 1)[1].split()[0]
    finally:
        client.stop()
        client.close()
    return {"address": address, "mode": mode, "samples": samples, **paired_cost(got, both)}


def _app_run(
    ctx: RunContext, zk_address: str, period: float, ticks: int, variant: str = "app", scenario: str = NAME
) -> dict[str, Any]:
    app_src = ctx.compare_app_src if variant == "app_compare" else ctx.app_src
    assert app_src is not None
    name = f"{variant}-{int(period * 1000)}ms".replace("_", "-")
    group = Group(
        TRACED_APP, 1, zk_address, f"/bench/{scenario}/{name}", ctx.workdir / scenario / name, app_src,
        extra={"leader-timeout": f"{int(period * 1000)}ms", "storage-capacity": str(ticks * 2)},
    )  # fmt: skip
    try:
        leader = group.spawn(f"{name}")
        first = wait_for(lambda: leader_files.newest(group.file_dir), 30.0, "the first file")
        cpu0, t0 = cpu_seconds(leader.pid) or 0.0, time.monotonic()
        wait_for(
            lambda: len(list(group.file_dir.glob("leader-*.json"))) >= ticks, period * ticks * 3 + 30,
            f"{ticks} files", interval=min(0.5, period * 10),
        )  # fmt: skip
        cpu = ((cpu_seconds(leader.pid) or 0.0) - cpu0) / (time.monotonic() - t0)
    finally:
        group.stop()
    files = leader_files.of_term(group.file_dir, first.epoch)[:ticks]
    trace = read_trace(trace_path(group, leader.identity))
    # The grid starts when the term's storage is ready (Leader: begin_term, then start = now).
    begun = [e["end"] for e in trace if e["name"] == "storage.begin_term"]
    entered = [e["end"] for e in trace if e["name"] == "enter Leader"]
    origin = begun[0] if begun else entered[0]
    out = analyse([f.written_at for f in files], period, origin=origin)
    out["breakdown"] = breakdown(trace, origin, period, ticks)
    out["leader_cpu_percent"] = cpu * 100
    out["app_src"] = str(app_src)
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
    files = leader_files.of_term(directory, 1)
    return analyse([f.written_at for f in files], period)


def check_targets(out: dict[str, Any]) -> dict[str, dict[str, bool]]:
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


def leaders(
    ctx: RunContext, zk_address: str, ticks: int, *, naive: bool, scenario: str = NAME
) -> dict[str, Any]:
    """Every period: the app under test, the app at ``--compare-app-ref`` if given (the two in
    alternating order, period by period), and with ``naive`` the sleep loop."""
    out: dict[str, Any] = {}
    variants = ["app", "app_compare"] if ctx.compare_app_src is not None else ["app"]
    for k, period in enumerate(PERIODS):
        n = ticks if period < 0.05 or not ctx.quick else max(10, ticks // 10)
        entry: dict[str, Any] = {"period_s": period, "ticks": n}
        for variant in alternate(variants, k):
            entry[variant] = _app_run(ctx, zk_address, period, n, variant, scenario)
        if naive:
            entry["naive_sleep"] = _naive_run(ctx, period, n)
        out[f"{int(period * 1000)}ms"] = entry
    return out


def config(ctx: RunContext, ticks: int, probe_samples: int) -> dict[str, Any]:
    compare = ctx.compare_label()
    return {"periods_s": list(PERIODS), "ticks": ticks, "probe_pairs": probe_samples, "compare_app": compare}


def run(ctx: RunContext) -> dict[str, Any]:
    ticks = ctx.pick_rounds(full=1000, quick=100)
    probe_samples = ctx.pick_rounds(full=1000, quick=50)
    started = time.time()
    with ctx.zookeeper(NAME) as zk:
        probe = {"standalone": confirm_probe(zk.address, probe_samples, f"/bench/{NAME}/probe/leader")}
        out = leaders(ctx, zk.address, ticks, naive=True)
    targets = check_targets(out)
    return make_result(
        ctx,
        started,
        config=config(ctx, ticks, probe_samples),
        summary={**out, "confirm_probe": probe, "targets": targets},
        rounds=[],
    )


VARIANTS = ("app", "app_compare", "naive_sleep")


def _label(variant: str, result: dict[str, Any]) -> str:
    if variant == "naive_sleep":
        return "sleep loop"
    if variant == "app_compare":
        return f"election {result.get('config', {}).get('compare_app') or 'compare'}"
    return f"election {result.get('machine', {}).get('app_commit', '')}".rstrip()


def _trio(b: dict[str, Any], name: str, quantiles: tuple[str, ...] = ("p50", "p99", "max")) -> str:
    return "/".join(ms(b[name][q], 2) for q in quantiles)


def report(result: dict[str, Any], title: str = TITLE) -> str:
    """The period table, the per-tick breakdown, the confirmation's round trips and the targets."""
    s = result["summary"]
    rows = []
    for key in (f"{int(p * 1000)}ms" for p in PERIODS):
        for who in (v for v in VARIANTS if v in s[key]):
            r = s[key][who]
            ie, la = r["interval_abs_error_s"], r["lateness_s"]
            rows.append(
                [
                    f"{_label(who, result)} @ {key}",
                    r["writes"],
                    ms(ie["p50"], 2),
                    ms(ie["p99"], 2),
                    ms(ie["max"], 1),
                    ms(la["p50"], 2),
                    ms(la["p99"], 2),
                    ms(r["drift_s_per_1000_ticks"], 1),
                    ms(r["drift_end_minus_start_s"], 1),
                    r["missed_ticks"],
                    num(r.get("leader_cpu_percent"), 1) if who != "naive_sleep" else "-",
                ]
            )
    text = table(
        title + " (|err|: interval error; late: behind the grid)",
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
    confirm_rows = []
    for key in (f"{int(p * 1000)}ms" for p in PERIODS):
        for who in (v for v in VARIANTS if v in s[key]):
            b = s[key][who].get("breakdown")
            if not b:
                continue
            text += (
                f"\n{_label(who, result)} @ {key}, per tick p50/p99/max ms: confirm read sent "
                f"{_trio(b, 'confirm_ahead_s')} before the slot, took {_trio(b, 'confirm_read_s')}, "
                f"overran the slot by {_trio(b, 'confirm_overrun_s')}; wake-up after slot or read "
                f"{_trio(b, 'wake_after_slot_s')}; write {_trio(b, 'write_s')}; ticks > 5 ms late by "
                f"main cause: {b['ticks_over_5ms_late_by_main_cause']}"
            )
            confirm_rows.append(
                [
                    f"{_label(who, result)} @ {key}",
                    "zk.leader",
                    b["confirm_read_s"]["n"],
                    _trio(b, "confirm_read_s", ("p50", "p95", "p99")),
                    "-",
                    "-",
                ]
            )
    for where, probe in s.get("confirm_probe", {}).items():
        for what, name in (("get", "get_s"), ("sync + get", "sync_get_s")):
            confirm_rows.append(
                [
                    f"probe, {where} ({probe['mode']})",
                    what,
                    probe[name]["n"],
                    _trio(probe, name, ("p50", "p95", "p99")),
                    _trio(probe, "extra_s", ("p50", "p95", "p99")) if name == "sync_get_s" else "",
                    num(probe["ratio"]["p50"], 2) if name == "sync_get_s" else "",
                ]
            )
    if confirm_rows:
        text += "\n" + table(
            "the confirmation's round trip (probe: same server, pairs interleaved)",
            ["who", "request", "n", "p50/p95/p99 ms", "sync adds p50/p95/p99 ms", "ratio p50"],
            confirm_rows,
        )
    verdicts = []
    for key, t in check_targets(s).items():
        verdicts.append(
            f"{key}: p99 < 5 ms {'met' if t['p99_interval_error_under_5ms'] else 'MISSED'}, "
            f"no drift {'met' if t['no_cumulative_drift'] else 'MISSED'}"
        )
    return text + "\ntargets: " + "; ".join(verdicts)


def plot(result: dict[str, Any], directory: Path, name: str = NAME, where: str = "") -> list[Path]:
    from bench import plots  # noqa: PLC0415 - matplotlib is optional

    s = result["summary"]
    panels = []
    for key in (f"{int(p * 1000)}ms" for p in PERIODS):
        series = {}
        for who in (v for v in VARIANTS if v in s[key]):
            label = "write-then-sleep loop" if who == "naive_sleep" else f"{_label(who, result)} (fixed grid)"
            series[label] = s[key][who]["lateness_series_ms"]
        panels.append((f"leader-timeout {key}", series))
    return [
        plots.series_over_index(
            directory / f"{name}.png",
            panels,
            title=f"Cadence{where}: each write's distance from the fixed grid (drift shows as a slope)",
            xlabel="tick",
            ylabel="lateness vs grid, ms",
        )
    ]
