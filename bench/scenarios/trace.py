"""Profile of a graceful take-over: where the new leader's milliseconds go (not part of ``all``).

    python -m bench trace [--rounds 20]

Three replicas run under ``bench/baselines/traced_replica.py``: the app's own CLI with every
ZooKeeper call, storage call, watch callback, wake-up and state entry timed to a file. Each round
SIGTERMs the leader while an observer session watches its node; then the new leader's timeline is
cut from the moment the observer heard the node deleted to the end of its first write. Steps are
matched across rounds by their order and name, and the table gives, per step, the median start
(relative to the deletion) and the median duration. The gap between one step's end and the next
one's start is the app's own Python (and the wait for a CPU on a busy machine).
"""

from __future__ import annotations

import signal
import statistics
import time
from pathlib import Path
from typing import Any

from bench.common import ms, summary, table
from bench.fleet import TRACED_APP, Group, read_trace, trace_path
from bench.scenarios import RunContext
from bench.scenarios._handover import watch_deletion
from bench.scenarios._skeleton import launched, make_result, no_plots

NAME = "trace"
TITLE = "Profile of a graceful take-over (the new leader's timeline after the old node is deleted)"


def _timeline(trace: Path, since: float, until: float) -> list[dict[str, Any]]:
    steps = [e for e in read_trace(trace) if e["end"] >= since - 0.002 and e["start"] <= until]
    steps.sort(key=lambda e: e["end"] if e["name"] in ("woken", "watch_fired") else e["start"])
    return steps


def run(ctx: RunContext) -> dict[str, Any]:
    rounds = ctx.pick_rounds(full=20, quick=3)
    started = time.time()
    timelines: list[list[dict[str, Any]]] = []
    totals: list[float] = []
    with ctx.zookeeper(NAME) as zk:
        group = Group(TRACED_APP, 3, zk.address, f"/bench/{NAME}", ctx.workdir / NAME, ctx.app_src)
        with launched(group):
            for _ in range(rounds):
                group.wait_ready()
                time.sleep(ctx.rng.uniform(0.2, 0.6))
                leader, newest = group.leader()
                deleted = watch_deletion(group)
                leader.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
                nxt = group.wait_next_leader(newest.epoch, timeout=30.0)
                group.wait_exit(leader)
                time.sleep(0.1)
                if deleted:
                    trace = trace_path(group, nxt.identity)
                    # The first write ends after written_at (it is stamped before the write).
                    steps = _timeline(trace, deleted[0], nxt.written_at + 0.05)
                    first_write = next((s for s in steps if s["name"] == "storage.write"), None)
                    cut = [s for s in steps if first_write is None or s["start"] <= first_write["start"]]
                    timelines.append(
                        [
                            {
                                "name": s["name"],
                                "start_ms": (s["end" if s["name"] in ("woken", "watch_fired") else "start"]
                                             - deleted[0]) * 1000,
                                "duration_ms": (s["end"] - s["start"]) * 1000
                                if s["name"] not in ("woken", "watch_fired") else 0.0,
                                "thread": s["thread"],
                            }
                            for s in cut
                        ]
                    )  # fmt: skip
                    totals.append(nxt.written_at - deleted[0])
                group.spawn(leader.identity)
    # Steps by (position, name) over the rounds that share the most common sequence.
    shapes: dict[tuple[str, ...], list[list[dict[str, Any]]]] = {}
    for timeline in timelines:
        shapes.setdefault(tuple(s["name"] for s in timeline), []).append(timeline)
    shape, members = max(shapes.items(), key=lambda item: len(item[1])) if shapes else ((), [])
    median_steps = [
        {
            "name": name,
            "start_ms": statistics.median(t[i]["start_ms"] for t in members),
            "duration_ms": statistics.median(t[i]["duration_ms"] for t in members),
            "thread": members[0][i]["thread"],
        }
        for i, name in enumerate(shape)
    ]
    return make_result(
        ctx,
        started,
        config={"rounds": rounds, "replicas": 3},
        summary={
            "takeover_s": summary(totals),
            "common_shape_rounds": len(members),
            "median_steps": median_steps,
        },
        rounds=timelines,
    )


def report(result: dict[str, Any]) -> str:
    s = result["summary"]
    rows = [
        [step["name"], f"{step['start_ms']:.2f}", f"{step['duration_ms']:.2f}", step["thread"]]
        for step in s["median_steps"]
    ]
    text = table(
        f"{TITLE}; median over the {s['common_shape_rounds']} of {result['config']['rounds']} rounds "
        "with the most common sequence of steps",
        ["step", "starts at ms", "takes ms", "thread"],
        rows,
    )
    return (
        text + f"\ntake-over (node deleted -> first file written_at): p50 {ms(s['takeover_s']['p50'], 2)} ms"
    )


plot = no_plots
