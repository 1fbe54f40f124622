"""Scenario 2, crash fail-over: SIGKILL the leader -> the next leader's first file.

A dead leader holds its node until ZooKeeper expires its session, so the fail-over is bounded
below by the session timeout and the target is "within the session timeout plus one tick".
ZooKeeper expires sessions in buckets of one tick, so rounds at a fixed rhythm would all see the
same phase: each round waits a random 0-1 s (five ticks) before the kill. kazoo's ``Election``
runs the same rounds, interleaved, on the same server, as a reference. The server's log says when
it expired the dead session; "reaction" is the new leader's first file after that.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

from bench.common import ms, table
from bench.fleet import APP, KAZOO, Group
from bench.scenarios import RunContext
from bench.scenarios._handover import handover_round
from bench.scenarios._skeleton import (
    ALTERNATE,
    fleets,
    fraction,
    launched,
    make_result,
    measure,
    per,
    series_ms,
    spread,
    spread_header,
    verdict,
)

NAME = "crash"
TITLE = "2. Crash fail-over (SIGKILL -> first file of the new leader) against the session timeout"
FLAVOURS = (APP, KAZOO)
TICK_MS = 200
SESSION_TIMEOUT = 2.0


def run(ctx: RunContext) -> dict[str, Any]:
    rounds = ctx.pick_rounds(full=20, quick=1)
    session_timeout = ctx.sized(SESSION_TIMEOUT, 1.0)
    size = 3
    started = time.time()
    bound = session_timeout + TICK_MS / 1000
    config = {
        "replicas_per_group": size,
        "rounds": rounds,
        "zk_tick_ms": TICK_MS,
        "session_timeout_s": session_timeout,
        "bound_s": bound,
        "phase_s": [0.0, 1.0],
    }

    with ctx.zookeeper(NAME, tick_ms=TICK_MS) as zk:

        def step(group: Group, _r: int) -> dict[str, Any]:
            row = handover_round(
                group,
                sig=signal.SIGKILL,
                rng=ctx.rng,
                phase=(0.0, 1.0),
                timeout=session_timeout * 5,
                zk=zk,
                quiet=0.3,
            )
            if row.get("expired_after_s") is not None:
                row["reaction_s"] = row["handover_s"] - row["expired_after_s"]
            return row

        fleet = fleets(ctx, zk.address, NAME, FLAVOURS, size, session_timeout=session_timeout)
        with launched(*fleet) as groups:
            rows = measure(groups, rounds, step, order=ALTERNATE)
    names = [f.name for f in FLAVOURS]
    # JSON key -> the rows' figure it summarises, per flavour.
    figures = {"failover_s": "handover_s", "expired_after_s": "expired_after_s", "reaction_s": "reaction_s"}
    stats = {key: per(rows, figure, names) for key, figure in figures.items()}
    out: dict[str, Any] = {}
    for name in names:
        mine = [r for r in rows if r["flavour"] == name]
        out[name] = {
            **{key: stats[key][name] for key in figures},
            "within_bound": sum(1 for r in mine if r["handover_s"] <= bound),
            "rounds": len(mine),
        }
    summarised = {
        **out,
        "target_every_round_within_bound": out["app"]["within_bound"] == out["app"]["rounds"],
    }
    return make_result(ctx, started, config=config, summary=summarised, rounds=rows)


def report(result: dict[str, Any]) -> str:
    cfg, s = result["config"], result["summary"]
    rows = []
    for f in FLAVOURS:
        st = s[f.name]
        fo, ex, re_ = st["failover_s"], st["expired_after_s"], st["reaction_s"]
        rows.append(
            [
                f.label,
                st["rounds"],
                *spread(fo),
                ms(ex["p50"]),
                *spread(re_, ("p50", "max")),
                fraction(st["within_bound"], st["rounds"]),
            ]
        )
    text = table(
        f"{TITLE}; session timeout {cfg['session_timeout_s']:g} s, tick {cfg['zk_tick_ms']} ms, "
        f"bound {cfg['bound_s'] * 1000:.0f} ms",
        [
            "contender",
            "rounds",
            *spread_header(),
            "expiry p50 ms",
            "reaction p50 ms",
            "reaction max ms",
            "within bound",
        ],
        rows,
    )
    text += "\ntarget: every round within session timeout + one tick: " + verdict(
        s["target_every_round_within_bound"]
    )
    return text


def plot(result: dict[str, Any], directory: Path) -> list[Path]:
    from bench import plots  # noqa: PLC0415 - matplotlib is optional

    cfg = result["config"]
    return [
        plots.distribution(
            directory / "crash-failover.png",
            series_ms(result["rounds"], "handover_s", {f.name: f.label for f in FLAVOURS}),
            title=f"Crash fail-over (SIGKILL -> new leader's first file), session timeout "
            f"{cfg['session_timeout_s']:g} s, tick {cfg['zk_tick_ms']} ms, random phase",
            xlabel="fail-over, ms",
            vlines={"session timeout": cfg["session_timeout_s"] * 1000, "+ one tick": cfg["bound_s"] * 1000},
        )
    ]
