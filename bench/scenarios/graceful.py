"""Scenario 1, graceful hand-over: SIGTERM the leader -> the next leader's first file.

Three groups of contender processes share one ZooKeeper, each under its own path: the app
(``election run --attempter-timeout=10s``), kazoo's ``Election`` recipe, and a naive contender that
tries ``create`` every second. Rounds alternate between the groups (app, kazoo, poller, then the
next round in a rotated order), so a slow patch of the machine hits all three alike. A round: wait
until the group is whole and led, pause a random 0.2-0.6 s, SIGTERM the leader, wait for a first
file of a higher epoch; the hand-over is that file's ``written_at`` minus the moment of the signal.
The signalled process is then started again so the group stays at N.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.common import ms, num, summary, table
from bench.fleet import APP, KAZOO, POLLER
from bench.scenarios import RunContext
from bench.scenarios._handover import handover_round, kazoo_round_trips
from bench.scenarios._skeleton import (
    fleet_config,
    fleets,
    launched,
    make_result,
    measure,
    paired,
    per,
    series_ms,
    spread,
    spread_header,
    values,
    verdict,
)

NAME = "graceful"
TITLE = "1. Graceful hand-over (SIGTERM -> first file of the new leader)"
FLAVOURS = (APP, KAZOO, POLLER)
BREAKDOWN = ("old_left_leader_s", "old_session_closed_s", "new_entered_leader_s")


def run(ctx: RunContext) -> dict[str, Any]:
    rounds = ctx.pick_rounds(full=30, quick=2)
    size = 3
    started = time.time()
    config = fleet_config(rounds, replicas_per_group=size, poller_period_s=1.0)
    with ctx.zookeeper(NAME) as zk, launched(*fleets(ctx, zk.address, NAME, FLAVOURS, size)) as groups:
        rtt = kazoo_round_trips(zk.address, f"/bench/{NAME}/rtt", ctx.sized(300, 50))
        rows = measure(groups, rounds, lambda group, _r: handover_round(group, rng=ctx.rng, observe=True))
    names = [f.name for f in FLAVOURS]
    stats = per(rows, "handover_s", names)
    mine = {name: [r for r in rows if r["flavour"] == name] for name in names}
    summarised = {
        "handover_s": stats,
        "file_seen_s": per(rows, "seen_after_s", names),
        "ratio_app_to_kazoo_p50": stats["app"]["p50"] / stats["kazoo"]["p50"],
        "ratio_app_to_poller_p50": stats["app"]["p50"] / stats["poller"]["p50"],
        "paired_ratio_app_to_kazoo": paired(mine["app"], mine["kazoo"], "handover_s"),
        "target_p50_within_2x_kazoo": stats["app"]["p50"] <= 2 * stats["kazoo"]["p50"],
        "target_far_below_poller": stats["app"]["p50"] * 10 <= stats["poller"]["p50"],
        "exit_codes": sorted({row["exit_code"] for row in rows}),
        "kazoo_round_trip_s": rtt,
        "leave_takeover_s": {
            name: {key: summary(values(mine[name], key)) for key in ("node_deleted_s", "takeover_s")}
            for name in names
        },
        "app_breakdown_s": {key: summary(values(mine["app"], key)) for key in BREAKDOWN},
    }
    return make_result(ctx, started, config=config, summary=summarised, rounds=rows)


def report(result: dict[str, Any]) -> str:
    s = result["summary"]
    stats = s["handover_s"]
    split = s["leave_takeover_s"]
    rows = []
    for flavour in FLAVOURS:
        st = stats[flavour.name]
        sp = split[flavour.name]
        rows.append(
            [
                flavour.label,
                st["n"],
                *spread(st),
                num(st["p50"] / stats["kazoo"]["p50"], 2),
                ms(sp["node_deleted_s"]["p50"]),
                ms(sp["takeover_s"]["p50"]),
                ms(sp["takeover_s"]["p95"]),
                ms(s["file_seen_s"][flavour.name]["p50"]),
            ]
        )
    text = table(
        f"{TITLE}; N={result['config']['replicas_per_group']} per group, same ZooKeeper, interleaved",
        [
            "contender",
            "rounds",
            *spread_header(),
            "p50 / kazoo",
            "node gone p50 ms",
            "take-over p50 ms",
            "take-over p95 ms",
            "file seen p50 ms",
        ],
        rows,
    )
    text += (
        "\n(hand-over: signal -> the new leader's first file's written_at, stamped as its write begins;"
        "\n node gone: -> the leader's node deleted, as a watching client hears it; take-over: node gone ->"
        "\n written_at; file seen: -> the file found in the directory by the benchmark's 2 ms poll, after"
        "\n the app's fsyncs; the baselines write without fsync)"
    )
    b = s["app_breakdown_s"]
    text += (
        "\napp hand-over, p50 ms after the signal: old leader leaves Leader "
        f"{ms(b['old_left_leader_s']['p50'])}, its session closed {ms(b['old_session_closed_s']['p50'])}, "
        f"new leader enters Leader {ms(b['new_entered_leader_s']['p50'])}, its first file "
        f"{ms(stats['app']['p50'])}"
    )
    rtt = s["kazoo_round_trip_s"]
    text += (
        f"\none request through kazoo on this server, p50 (p95): read {ms(rtt['read_s']['p50'], 2)} "
        f"({ms(rtt['read_s']['p95'], 2)}) ms, create {ms(rtt['create_s']['p50'], 2)} "
        f"({ms(rtt['create_s']['p95'], 2)}) ms"
    )
    pairs = s["paired_ratio_app_to_kazoo"]
    text += (
        f"\npaired ratio app/kazoo (round by round): p50 {num(pairs['p50'], 2)}, "
        f"p95 {num(pairs['p95'], 2)}; target p50 <= 2x kazoo: "
        f"{verdict(s['target_p50_within_2x_kazoo'])}; far below the poller: "
        f"{verdict(s['target_far_below_poller'])}"
    )
    return text


def plot(result: dict[str, Any], directory: Path) -> list[Path]:
    from bench import plots  # noqa: PLC0415 - matplotlib is optional

    return [
        plots.distribution(
            directory / "graceful-handover.png",
            series_ms(result["rounds"], "handover_s", {f.name: f.label for f in FLAVOURS}),
            title="Graceful hand-over (SIGTERM -> new leader's first file), same ZooKeeper, interleaved",
            xlabel="hand-over, ms (log scale)",
            log=True,
        )
    ]
