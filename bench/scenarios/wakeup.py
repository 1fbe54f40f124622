"""Wake-up latency of a thread on this machine, with an idle third thread that blocks or polls.

    python -m bench wakeup

Issue 13's question about the HTTP thread's 50 ms poll: it had stayed because a blocking HTTP thread
once made take-overs 2-2.7x slower "for a reason not found". If the reason were the machine (a vCPU
that sleeps deeply once nothing in the process polls, a thread that slept long waking slowly), a
cross-thread wake-up would be slower with a third thread blocked than with one polling. This
measures exactly that, and nothing else: ``bench/baselines/wakeup_probe.py`` in a fresh process per
case (the main thread waits on an ``Event``, as the state machine does; a second thread sets it
after a gap, as kazoo's callback thread does; the third thread blocks, polls every 50 ms, or does
not exist), for gaps from 3 ms (a busy process) to 1 s (a thread that slept long). Cases run in
a rotated order, each twice, so a slow patch of the machine hits them alike.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import summary, table
from bench.scenarios import RunContext
from bench.scenarios._skeleton import ROTATE, make_result, no_plots, schedule

NAME = "wakeup"
TITLE = "Wake-up latency of a waiting thread, with a third thread that blocks, polls (50 ms) or is absent"
PROBE = Path(__file__).resolve().parents[1] / "baselines" / "wakeup_probe.py"
THIRDS = ("none", "block", "poll")


def run(ctx: RunContext) -> dict[str, Any]:
    # (gap ms, samples per process); about 41 s per case in a full run.
    gaps = ctx.sized([(3.0, 300), (200.0, 50), (1000.0, 30)], [(3.0, 30), (200.0, 3)])
    repeats = ctx.pick_rounds(full=2, quick=1)
    started = time.time()
    rows: list[dict[str, Any]] = []
    for gap, samples in gaps:
        for r, third in schedule(THIRDS, repeats, ROTATE):
            command = [sys.executable, str(PROBE), "--gap-ms", str(gap), "--samples", str(samples)]
            out = subprocess.run(
                [*command, "--third", third],
                capture_output=True,
                text=True,
                check=True,
                timeout=120,
            )
            result = json.loads(out.stdout)
            rows.append({"gap_ms": gap, "third": third, "round": r, "latencies_s": result["latencies_s"]})

    def pooled(gap: float, third: str) -> dict[str, float]:
        mine = [row for row in rows if (row["gap_ms"], row["third"]) == (gap, third)]
        return summary(v for row in mine for v in row["latencies_s"])

    summarised = {f"{gap:g}": {third: pooled(gap, third) for third in THIRDS} for gap, _samples in gaps}
    config = {"gaps_ms": [g for g, _ in gaps], "samples": dict(gaps), "repeats": repeats}
    return make_result(ctx, started, config=config, summary=summarised, rounds=rows)


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:.0f}"


def report(result: dict[str, Any]) -> str:
    rows = []
    for gap, by_third in result["summary"].items():
        base = by_third["none"]["p50"]
        for third in THIRDS:
            s = by_third[third]
            rows.append(
                [f"{gap} ms", third, s["n"], _us(s["p50"]), _us(s["p95"]), _us(s["p99"]), _us(s["max"]),
                 f"{s['p50'] / base:.2f}"]
            )  # fmt: skip
    return table(
        f"{TITLE}; set() -> the waiter runs, microseconds",
        ["gap", "third thread", "samples", "p50 us", "p95 us", "p99 us", "max us", "p50 / none"],
        rows,
    )


plot = no_plots
