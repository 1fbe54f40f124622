"""Scenario 4, scale: N = 3, 10, 50, 100 replicas (real processes), app vs kazoo's ``Election``.

For each N, the app's group and then kazoo's (same N, same server, a fresh path) run alone on one
ZooKeeper: start (in batches, the first one alone so it leads), measure the steady state (server
requests, transactions and notifications per second, the server's CPU) over a quiet window, then
graceful hand-over rounds (SIGTERM the leader, as in scenario 1). For each hand-over the server's
counters are read just before the signal and again once its zxid has been still for half a second:
transactions (zxid delta: every write, failed creates included), notifications (watchers
reached by watch events), requests (the server's own DEBUG line per processed request, by type,
pings apart; failed writes marked), and ZooKeeper CPU (the steady rate and our four-letter words
subtracted). Resident memory of every contender is read once per group.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from bench.common import ms, num, pss_bytes, rss_bytes, summary, table
from bench.fleet import APP, KAZOO, Group
from bench.scenarios import RunContext
from bench.scenarios._handover import by_type_median, handover_round, net_requests, steady_fleet
from bench.scenarios._skeleton import fleet_config, launched, make_result, measure
from tools.waiting import wait_for

NAME = "scale"
TITLE = "4. Scale: hand-over and ZooKeeper work per hand-over at N replicas, app vs kazoo Election"
FLAVOURS = (APP, KAZOO)


def _memory(group: Group) -> dict[str, float]:
    rss = [rss_bytes(pid) or 0 for pid in group.pids()]
    pss = [pss_bytes(pid) or 0 for pid in group.pids()]
    return {
        "rss_mean_mib": statistics.fmean(rss) / 2**20 if rss else 0.0,
        "rss_max_mib": max(rss) / 2**20 if rss else 0.0,
        "pss_mean_mib": statistics.fmean(pss) / 2**20 if pss else 0.0,
        "rss_total_mib": sum(rss) / 2**20,
    }


def group_net_requests(group: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, float]:
    """Requests per hand-over of one group less the steady-state (non-ping) rate over the same window:
    at large N the periodic looks of idle replicas land in every window."""
    mine = [r for r in rows if r["flavour"] == group["flavour"] and r["n"] == group["n"]]
    return summary(net_requests(r, group["steady"]) for r in mine)


def run(ctx: RunContext) -> dict[str, Any]:
    sizes = ctx.sized([3, 10, 50, 100], [3, 10])
    rounds = ctx.pick_rounds(full=10, quick=1)
    window = ctx.sized(20.0, 1.0)
    started = time.time()
    config = fleet_config(rounds, sizes=sizes, steady_window_s=window)
    rows: list[dict[str, Any]] = []
    groups_out: list[dict[str, Any]] = []
    with ctx.zookeeper(NAME, request_log=True) as zk:
        baseline_sessions = zk.snapshot().sessions
        word_cpu = zk.word_cpu_cost(200)
        for n in sizes:
            for flavour in FLAVOURS:
                group = Group(
                    flavour,
                    n,
                    zk.address,
                    f"/bench/{NAME}/n{n}/{flavour.name}",
                    ctx.workdir / NAME / f"n{n}-{flavour.name}",
                    ctx.app_src,
                )
                with launched(group, start=None, stop_timeout=60.0):  # steady_fleet starts it
                    start_s, steady = steady_fleet(
                        ctx, zk, group, window, ready=lambda g: g.wait_ready(timeout=120.0), word_cpu=word_cpu
                    )
                    memory = _memory(group)

                    def step(group: Group, _r: int, steady: dict[str, float] = steady) -> dict[str, Any]:
                        return handover_round(
                            group, rng=ctx.rng, timeout=60.0, zk=zk, steady=steady, word_cpu=word_cpu
                        )

                    rows.extend(measure([group], rounds, step))
                wait_for(
                    lambda: zk.snapshot().sessions <= baseline_sessions,
                    60.0,
                    "sessions to close",
                    interval=0.2,
                )
                mine = [r for r in rows if r["flavour"] == flavour.name and r["n"] == n]
                groups_out.append(
                    {
                        "flavour": flavour.name,
                        "n": n,
                        "start_all_s": round(start_s, 2),
                        "steady": steady,
                        "memory": memory,
                        "handover_s": summary(r["handover_s"] for r in mine),
                        "transactions": summary(r["zk_transactions"] for r in mine),
                        "notifications": summary(r["zk_notifications"] for r in mine),
                        "requests": summary(r["zk_requests"] for r in mine),
                        "failed_writes": summary(r["zk_failed_writes"] for r in mine),
                        "packets_received": summary(r["zk_packets_received"] for r in mine),
                        "requests_by_type_p50": by_type_median(mine),
                        "zk_cpu_ms": summary(r["zk_zk_cpu_seconds"] * 1000 for r in mine),
                        "settle_s": summary(r["zk_settle_s"] for r in mine),
                    }
                )
                print(
                    f"  N={n:>3} {flavour.name:<6} p50 {ms(groups_out[-1]['handover_s']['p50'])} ms, "
                    f"txn/hand-over {num(groups_out[-1]['transactions']['p50'], 0)}",
                    flush=True,
                )
    by = {(g["flavour"], g["n"]): g for g in groups_out}
    verdict = {}
    for n in sizes:
        app, kz = by[("app", n)], by[("kazoo", n)]
        verdict[str(n)] = {
            "ratio_p50_app_to_kazoo": app["handover_s"]["p50"] / kz["handover_s"]["p50"],
            "within_2x": app["handover_s"]["p50"] <= 2 * kz["handover_s"]["p50"],
            "app_transactions_p50": app["transactions"]["p50"],
            "app_notifications_p50": app["notifications"]["p50"],
            "app_steady_transactions_per_s": app["steady"]["transactions_per_s"],
        }
    summarised = {"groups": groups_out, "by_n": verdict, "zk_cpu_per_four_letter_word_s": word_cpu}
    return make_result(ctx, started, config=config, summary=summarised, rounds=rows)


def report(result: dict[str, Any]) -> str:
    groups = result["summary"]["groups"]
    by = {(g["flavour"], g["n"]): g for g in groups}
    net = {(g["flavour"], g["n"]): group_net_requests(g, result["rounds"]) for g in groups}
    rows = []
    for g in groups:
        kz = by.get(("kazoo", g["n"]))
        ratio = g["handover_s"]["p50"] / kz["handover_s"]["p50"] if kz else float("nan")
        st = g["steady"]
        rows.append(
            [
                f"{'election' if g['flavour'] == 'app' else 'kazoo'} N={g['n']}",
                ms(g["handover_s"]["p50"]),
                ms(g["handover_s"]["p95"]),
                ms(g["handover_s"]["max"]),
                num(ratio, 2),
                num(g["transactions"]["p50"], 0),
                num(g["failed_writes"]["p50"], 0),
                num(g["notifications"]["p50"], 0),
                num(g["requests"]["p50"], 0),
                num(net[(g["flavour"], g["n"])]["p50"], 0),
                num(g["zk_cpu_ms"]["p50"], 0),
                num(st["non_ping_requests_per_s"], 1),
                num(st["requests_per_s"], 1),
                num(st["transactions_per_s"], 2),
                num(st["zk_cpu_cores"] * 100, 1),
                num(g["memory"]["rss_mean_mib"], 1),
            ]
        )
    text = table(
        f"{TITLE} (per hand-over: p50 over {result['config']['rounds']} rounds; steady state over "
        f"{result['config']['steady_window_s']:g} s)",
        [
            "group",
            "p50 ms",
            "p95 ms",
            "max ms",
            "p50/kazoo",
            "txn",
            "failed",
            "notif",
            "requests",
            "net",
            "ZK CPU ms",
            "steady req/s",
            "+pings",
            "steady txn/s",
            "steady ZK CPU %",
            "RSS MiB",
        ],
        rows,
    )
    text += "\n(txn: zxids; failed: writes that failed, e.g. creates on an existing node;"
    text += " notif: watchers reached;"
    text += "\n requests: processed by the server, pings apart; net: less the steady rate over the window;"
    text += "\n steady req/s without and with pings)"
    for g in groups:
        kinds = ", ".join(f"{k} {v:g}" for k, v in g.get("requests_by_type_p50", {}).items() if k != "ping")
        text += f"\n  requests per hand-over by type (p50), {g['flavour']} N={g['n']}: {kinds or '-'}"
    return text


def plot(result: dict[str, Any], directory: Path) -> list[Path]:
    from bench import plots  # noqa: PLC0415 - matplotlib is optional

    groups = result["summary"]["groups"]

    def series(flavour: str, key: str, stat: str, scale: float = 1.0) -> tuple[list[int], list[float]]:
        mine = sorted((g for g in groups if g["flavour"] == flavour), key=lambda g: g["n"])
        return [g["n"] for g in mine], [g[key][stat] * scale for g in mine]

    def net_series(flavour: str) -> tuple[list[int], list[float]]:
        mine = sorted((g for g in groups if g["flavour"] == flavour), key=lambda g: g["n"])
        net = [group_net_requests(g, result["rounds"])["p50"] for g in mine]
        return [g["n"] for g in mine], [max(v, 0.5) for v in net]

    return [
        plots.by_n(
            directory / "scale.png",
            [
                (
                    "hand-over, ms",
                    "graceful hand-over (p50 solid, p95 dashed)",
                    {
                        "election p50": series("app", "handover_s", "p50", 1000),
                        "election p95": series("app", "handover_s", "p95", 1000),
                        "kazoo Election p50": series("kazoo", "handover_s", "p50", 1000),
                        "kazoo Election p95": series("kazoo", "handover_s", "p95", 1000),
                    },
                    True,
                ),
                (
                    "per hand-over (p50)",
                    "ZooKeeper transactions and notifications",
                    {
                        "election transactions": series("app", "transactions", "p50"),
                        "election notifications": series("app", "notifications", "p50"),
                        "kazoo transactions": series("kazoo", "transactions", "p50"),
                        "kazoo notifications": series("kazoo", "notifications", "p50"),
                    },
                    True,
                ),
                (
                    "requests per hand-over (p50)",
                    "requests (pings apart; dashed: net of steady rate)",
                    {
                        "election": series("app", "requests", "p50"),
                        "kazoo Election": series("kazoo", "requests", "p50"),
                        "election net": net_series("app"),
                        "kazoo net": net_series("kazoo"),
                    },
                    True,
                ),
            ],
            title="Scale: N real replica processes on one ZooKeeper (2 CPUs shared by all)",
        )
    ]
