"""Profile of a graceful hand-over: where both leaders' milliseconds go, tail included (not in ``all``).

    python -m bench trace [--rounds 20]
    BENCH_TRACE_VARIANTS=product,http-poll,no-gc python -m bench trace --rounds 30

Each variant is a group of three replicas under ``bench/baselines/traced_replica.py``: the app's own
CLI with every ZooKeeper call, storage call, watch callback, wake-up, state entry and garbage
collection timed to a file. A variant differs from the product by one knob (:data:`VARIANTS`: the
HTTP thread's old 50 ms poll, the garbage collector off, another switch interval, quieter logs), so
that a suspected cause of the tail is measured against the product in the same run, rounds
interleaved (:data:`~bench.scenarios._skeleton.ALTERNATE`).

A round SIGTERMs a group's leader while an observer session watches its node. The old leader's
timeline is cut from the signal to its node's deletion (as the observer heard it), the new leader's
from the deletion to the end of its first write. The report gives, per variant, the distribution of
each part (p50, p95, max: the tail is the point), per step of the most common sequence its start and
duration at p50 / p95 / max, and the slowest rounds step by step with the largest gap named: a gap
between one step's end and the next one's start is the app's own Python, or the wait for a CPU, a
GIL switch, or a collection (GC spans are in the timeline).
"""

from __future__ import annotations

import itertools
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import ms, summary, table
from bench.fleet import TRACED_APP, Group, read_trace, trace_path
from bench.scenarios import RunContext
from bench.scenarios._handover import watch_deletion
from bench.scenarios._skeleton import ALTERNATE, launched, make_result, measure, no_plots
from tools.waiting import wait_for

NAME = "trace"
TITLE = "Profile of a graceful hand-over (the old leader's way out and the new leader's way in)"

#: name -> (environment for traced_replica.py, extra app flags). "product" is the app as it is.
VARIANTS: dict[str, tuple[dict[str, str], dict[str, str]]] = {
    "product": ({}, {}),
    # The HTTP selector thread waking every 50 ms, as before issue 13 (POLL_INTERVAL).
    "http-poll": ({"BENCH_TRACE_HTTP_POLL": "0.05"}, {}),
    "no-gc": ({"BENCH_TRACE_GC": "off"}, {}),
    "switch-1ms": ({"BENCH_TRACE_SWITCH_INTERVAL": "0.001"}, {}),
    "log-warning": ({}, {"log-level": "warning"}),
    "no-end-record": ({"BENCH_TRACE_NO_END_RECORD": "1"}, {}),
}
DEFAULT_VARIANTS = ("product", "http-poll")
# Events that mark an instant (their end), not a span.
_INSTANTS = ("woken", "watch_fired")
SLOWEST = 3


def _variants() -> list[str]:
    chosen = [v.strip() for v in os.environ.get("BENCH_TRACE_VARIANTS", "").split(",") if v.strip()]
    unknown = [v for v in chosen if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"BENCH_TRACE_VARIANTS: unknown {', '.join(unknown)} (known: {', '.join(VARIANTS)})")
    return chosen or list(DEFAULT_VARIANTS)


def _at(event: dict[str, Any]) -> float:
    return float(event["end"] if event["name"] in _INSTANTS else event["start"])


def _steps(trace: Path, since: float, until: float, origin: float) -> list[dict[str, Any]]:
    """The events of one trace file between ``since`` and ``until`` (wall seconds), in time order,
    as ``{name, start_ms, duration_ms, thread}`` relative to ``origin``."""
    events = [e for e in read_trace(trace) if e["end"] >= since - 0.002 and _at(e) <= until]
    events.sort(key=_at)
    return [
        {
            "name": e["name"] + (f" gen{e['generation']}" if "generation" in e else ""),
            "start_ms": (_at(e) - origin) * 1000,
            "duration_ms": 0.0 if e["name"] in _INSTANTS else (e["end"] - e["start"]) * 1000,
            "thread": e["thread"],
        }
        for e in events
    ]


def _largest_gap(steps: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The longest stretch of the main thread between one step's end and the next one's start."""
    main = [s for s in steps if s["thread"] == "MainThread"]
    best = None
    for before, after in itertools.pairwise(main):
        gap = after["start_ms"] - (before["start_ms"] + before["duration_ms"])
        if best is None or gap > best["gap_ms"]:
            best = {"gap_ms": gap, "after": before["name"], "before": after["name"]}
    return best


def _round(ctx: RunContext, group: Group, variant: str) -> dict[str, Any]:
    group.wait_ready()
    time.sleep(ctx.rng.uniform(0.2, 0.6))
    leader, newest = group.leader()
    deleted = watch_deletion(group)
    t0 = time.time()
    leader.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
    nxt = group.wait_next_leader(newest.epoch, timeout=30.0)
    group.wait_exit(leader)
    row: dict[str, Any] = {"flavour": variant, "old_leader": leader.identity, "new_leader": nxt.identity}
    if deleted:
        gone = deleted[0]
        new_trace = trace_path(group, nxt.identity)

        def first_write() -> dict[str, Any] | None:
            return next(
                (e for e in read_trace(new_trace) if e["name"] == "storage.write" and e["end"] >= gone), None
            )

        write = wait_for(first_write, 10, f"{nxt.identity}'s first write in its trace")
        assert write is not None
        steps = _steps(new_trace, gone, write["end"], gone)  # the write's own steps too
        row.update(
            {
                "node_gone_ms": (gone - t0) * 1000,
                "takeover_ms": (nxt.written_at - gone) * 1000,
                "written_ms": (write["end"] - gone) * 1000,
                "new_steps": steps,
                "old_steps": _steps(trace_path(group, leader.identity), t0, gone, t0),
                "gc_ms": sum(s["duration_ms"] for s in steps if s["name"].startswith("gc")),
                "largest_gap": _largest_gap(steps),
            }
        )
    group.spawn(leader.identity)
    return row


def run(ctx: RunContext) -> dict[str, Any]:
    rounds = ctx.pick_rounds(full=20, quick=3)
    variants = _variants()
    started = time.time()
    with ctx.zookeeper(NAME) as zk:
        groups = []
        for variant in variants:
            env, extra = VARIANTS[variant]
            group = Group(
                TRACED_APP, 3, zk.address, f"/bench/{NAME}/{variant}", ctx.workdir / NAME / variant,
                ctx.app_src, extra=dict(extra),
            )  # fmt: skip
            group._env.update(env)  # the knob reaches traced_replica.py
            groups.append(group)
        variant_of = {id(g): v for g, v in zip(groups, variants, strict=True)}
        with launched(*groups):
            rows = measure(groups, rounds, lambda g, _r: _round(ctx, g, variant_of[id(g)]), ALTERNATE)
    summarised = {variant: _summarise([r for r in rows if r["flavour"] == variant]) for variant in variants}
    return make_result(
        ctx,
        started,
        config={"rounds": rounds, "replicas": 3, "variants": variants},
        summary=summarised,
        rounds=rows,
    )


def _summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    traced = [r for r in rows if "new_steps" in r]
    shapes: dict[tuple[str, ...], list[list[dict[str, Any]]]] = {}
    for r in traced:
        shape = tuple(
            s["name"] for s in r["new_steps"] if s["thread"] == "MainThread" or s["name"] == "watch_fired"
        )
        shapes.setdefault(shape, []).append(
            [s for s in r["new_steps"] if s["thread"] == "MainThread" or s["name"] == "watch_fired"]
        )
    shape, members = max(shapes.items(), key=lambda item: len(item[1])) if shapes else ((), [])
    steps = [
        {
            "name": name,
            "start_ms": summary(t[i]["start_ms"] for t in members),
            "duration_ms": summary(t[i]["duration_ms"] for t in members),
        }
        for i, name in enumerate(shape)
    ]
    return {
        "rounds": len(rows),
        "node_gone_ms": summary(r["node_gone_ms"] for r in traced),
        "takeover_ms": summary(r["takeover_ms"] for r in traced),
        "written_ms": summary(r["written_ms"] for r in traced),
        "gc_rounds": sum(1 for r in traced if r["gc_ms"] > 0),
        "common_shape_rounds": len(members),
        "other_shapes": sorted(len(v) for k, v in shapes.items() if k != shape),
        "steps": steps,
    }


def _spread(s: dict[str, float]) -> str:
    return f"{ms(s['p50'] / 1000, 2)} / {ms(s['p95'] / 1000, 2)} / {ms(s['max'] / 1000, 2)}"


def report(result: dict[str, Any]) -> str:
    summaries = result["summary"]
    variants = result["config"].get("variants", list(summaries))
    text = table(
        f"{TITLE}: ms, p50 / p95 / max",
        [
            "variant",
            "rounds",
            "signal -> node gone",
            "node gone -> stamped",
            "node gone -> written",
            "rounds with a GC",
        ],
        [
            [
                v,
                summaries[v]["rounds"],
                _spread(summaries[v]["node_gone_ms"]),
                _spread(summaries[v]["takeover_ms"]),
                _spread(summaries[v]["written_ms"]),
                summaries[v]["gc_rounds"],
            ]
            for v in variants
        ],
    )
    for v in variants:
        s = summaries[v]
        text += "\n\n" + table(
            f"{v}: the new leader's steps (main thread and watch), {s['common_shape_rounds']} of "
            f"{s['rounds']} rounds with the most common sequence (others: {s['other_shapes']}); "
            "ms after the deletion",
            ["step", "starts at p50 / p95 / max", "takes p50 / p95 / max"],
            [[st["name"], _spread(st["start_ms"]), _spread(st["duration_ms"])] for st in s["steps"]],
        )
    traced = [r for r in result["rounds"] if "new_steps" in r]
    slowest = sorted(traced, key=lambda r: r["written_ms"], reverse=True)[:SLOWEST]
    for r in slowest:
        gap = r["largest_gap"] or {"gap_ms": 0.0, "after": "-", "before": "-"}
        text += (
            f"\n\nslow round ({r['flavour']}, round {r['round']}): node gone {r['node_gone_ms']:.2f}, "
            f"written {r['written_ms']:.2f} ms; largest gap {gap['gap_ms']:.2f} ms between "
            f"{gap['after']} and {gap['before']}"
        )
        for part, steps in (("old", r["old_steps"]), ("new", r["new_steps"])):
            for st in steps:
                text += f"\n  {part} {st['start_ms']:8.2f} +{st['duration_ms']:6.2f}"
                text += f"  {st['name']} [{st['thread']}]"
    return text + _medians_line(summaries, variants)


def _medians_line(summaries: dict[str, Any], variants: list[str]) -> str:
    base = summaries.get("product")
    if base is None:
        return ""
    parts = []
    for v in variants:
        if v != "product" and summaries[v]["written_ms"]["n"]:
            ratio = summaries[v]["written_ms"]["p50"] / base["written_ms"]["p50"]
            tail = summaries[v]["written_ms"]["p95"] / base["written_ms"]["p95"]
            parts.append(f"{v}: p50 {ratio:.2f}x, p95 {tail:.2f}x the product's")
    return (
        ("\n\nnode gone -> written, against the product in the same run: " + "; ".join(parts))
        if parts
        else ""
    )


plot = no_plots
