"""Scenario 4, scale: N = 3, 10, 50, 100 replicas (real processes), app vs kazoo's ``Election``.

For each N, the app's group and kazoo's (same N, same server, each under a fresh path) run *at
once* on one ZooKeeper: start the app's (in batches of 10, the first one alone so it leads) and
measure the steady state (server requests, transactions and notifications per second, the server's
CPU) over a quiet window with it alone, then start kazoo's and measure the steady state again with
both alive (kazoo's own steady rates are the difference). Then graceful hand-over rounds (SIGTERM
the leader, as in scenario 1), the two groups' rounds interleaved (``ROTATE``: each first equally
often), so each N's ratio is paired round by round and neither group meets the server fresh from
its warm-up alone (issue 13: before, the app's N = 3 group ran first, alone, and measured 2x kazoo).
The hand-over is the signal -> the new term's first file *visible* (the group's inotify watch, as in
scenario 1), its ``written_at`` beside it (stamped).

For each hand-over the server's counters are read just before the signal and again once its zxid
has been still for half a second: transactions (zxid delta: every write, failed creates included),
notifications (watchers reached by watch events), requests (the server's own DEBUG line per
processed request, by type, pings apart; failed writes marked), and ZooKeeper CPU (the steady rate
*with both groups alive* and our four-letter words subtracted: the other group's idle looks land in
the window too). Resident memory of every contender is read once per group.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from bench.common import ms, num, pss_bytes, ratio, rss_bytes, summary, table
from bench.fleet import APP, KAZOO, Group
from bench.scenarios import RunContext
from bench.scenarios._handover import (
    by_type_median,
    handover_round,
    net_requests,
    start_watched,
    steady_state,
)
from bench.scenarios._skeleton import fleet_config, launched, make_result, measure, paired
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
    at large N the periodic looks of idle replicas land in every window, those of both groups since
    they run together (``steady_window``: the steady state with both alive)."""
    mine = [r for r in rows if r["flavour"] == group["flavour"] and r["n"] == group["n"]]
    return summary(net_requests(r, group.get("steady_window", group["steady"])) for r in mine)


def steady_difference(both: dict[str, Any], alone: dict[str, Any]) -> dict[str, Any]:
    """The steady rates of what was added to ``alone`` to make ``both`` (the second group's own):
    the per-second figures subtracted, the counts (sessions, watches) too; never below zero."""
    out: dict[str, Any] = {}
    for key, value in both.items():
        if key == "requests_by_type_per_s":
            kinds = set(value) | set(alone.get(key, {}))
            out[key] = {k: max(0.0, value.get(k, 0.0) - alone[key].get(k, 0.0)) for k in sorted(kinds)}
        elif key == "seconds":
            out[key] = value
        elif isinstance(value, int | float):
            out[key] = max(0.0, value - alone.get(key, 0.0))
    return out


def _start(ctx: RunContext, group: Group, fallback: list[str]) -> float:
    """Watch the group's directory (or note why not), start it as ``steady_fleet`` does and wait until
    it is whole and led, plus time for the last batch's first looks; the seconds until ready."""
    started = time.time()
    start_watched(group, fallback, NAME)
    group.wait_ready(timeout=120.0)
    ready = time.time() - started
    time.sleep(ctx.sized(2.0, 0.3))
    return ready


def run(ctx: RunContext) -> dict[str, Any]:
    sizes = ctx.pick_sizes([3, 10, 50, 100], [3, 10])
    rounds = ctx.pick_rounds(full=10, quick=1)
    window = ctx.sized(20.0, 1.0)
    started = time.time()
    fallback: list[str] = []
    rows: list[dict[str, Any]] = []
    groups_out: list[dict[str, Any]] = []
    with ctx.zookeeper(NAME, request_log=True) as zk:
        baseline_sessions = zk.snapshot().sessions
        word_cpu = zk.word_cpu_cost(200)
        for n in sizes:
            groups = [
                Group(
                    flavour,
                    n,
                    zk.address,
                    f"/bench/{NAME}/n{n}/{flavour.name}",
                    ctx.workdir / NAME / f"n{n}-{flavour.name}",
                    ctx.app_src,
                )
                for flavour in FLAVOURS
            ]
            app, kazoo = groups
            with launched(*groups, start=None, stop_timeout=60.0):
                start_s = {"app": _start(ctx, app, fallback)}
                alone = steady_state(zk, window, word_cpu)
                start_s["kazoo"] = _start(ctx, kazoo, fallback)
                both = steady_state(zk, window, word_cpu)
                steady = {"app": alone, "kazoo": steady_difference(both, alone)}
                memory = {g.flavour.name: _memory(g) for g in groups}

                def step(group: Group, _r: int, both: dict[str, float] = both) -> dict[str, Any]:
                    return handover_round(
                        group, rng=ctx.rng, timeout=60.0, zk=zk, steady=both, word_cpu=word_cpu, visible=True
                    )

                rows.extend(measure(groups, rounds, step))
            wait_for(
                lambda: zk.snapshot().sessions <= baseline_sessions,
                60.0,
                "sessions to close",
                interval=0.2,
            )
            for flavour in FLAVOURS:
                mine = [r for r in rows if r["flavour"] == flavour.name and r["n"] == n]
                groups_out.append(
                    {
                        "flavour": flavour.name,
                        "n": n,
                        "start_all_s": round(start_s[flavour.name], 2),
                        "steady": steady[flavour.name],
                        "steady_window": both,
                        "memory": memory[flavour.name],
                        "handover_s": summary(r["handover_s"] for r in mine),
                        "stamped_s": summary(r["stamped_s"] for r in mine),
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
                    f"  N={n:>3} {flavour.name:<6} visible p50 {ms(groups_out[-1]['handover_s']['p50'])} ms, "
                    f"txn/hand-over {num(groups_out[-1]['transactions']['p50'], 0)}",
                    flush=True,
                )
    summarised = {
        "groups": groups_out,
        "by_n": by_n(groups_out, rows, sizes),
        "zk_cpu_per_four_letter_word_s": word_cpu,
    }
    config = fleet_config(
        rounds,
        sizes=sizes,
        steady_window_s=window,
        interleaved=True,
        visible_by="poll" if fallback else "inotify",
        visible_fallback=fallback[0] if fallback else None,
    )
    return make_result(ctx, started, config=config, summary=summarised, rounds=rows)


def by_n(groups: list[dict[str, Any]], rows: list[dict[str, Any]], sizes: list[int]) -> dict[str, Any]:
    """Per N: app over kazoo, of the distributions' p50 and p95 and round by round (the groups ran
    together, their rounds interleaved), for the visible and the stamped hand-over."""
    by = {(g["flavour"], g["n"]): g for g in groups}
    out = {}
    for n in sizes:
        app, kz = by[("app", n)], by[("kazoo", n)]
        mine = {f: [r for r in rows if r["flavour"] == f and r["n"] == n] for f in ("app", "kazoo")}
        pairs = paired(mine["app"], mine["kazoo"], "handover_s")
        out[str(n)] = {
            "ratio_p50_app_to_kazoo": ratio(app["handover_s"]["p50"], kz["handover_s"]["p50"]),
            "ratio_p95_app_to_kazoo": ratio(app["handover_s"]["p95"], kz["handover_s"]["p95"]),
            "paired_app_to_kazoo": pairs,
            "ratio_p50_stamped_app_to_kazoo": ratio(app["stamped_s"]["p50"], kz["stamped_s"]["p50"]),
            "paired_stamped_app_to_kazoo": paired(mine["app"], mine["kazoo"], "stamped_s"),
            "within_2x": app["handover_s"]["p50"] <= 2 * kz["handover_s"]["p50"],
            "app_transactions_p50": app["transactions"]["p50"],
            "app_notifications_p50": app["notifications"]["p50"],
            "app_steady_transactions_per_s": app["steady"]["transactions_per_s"],
        }
    return out


def report(result: dict[str, Any]) -> str:
    groups = result["summary"]["groups"]
    by = {(g["flavour"], g["n"]): g for g in groups}
    net = {(g["flavour"], g["n"]): group_net_requests(g, result["rounds"]) for g in groups}
    per_n = result["summary"].get("by_n", {})
    rows = []
    for g in groups:
        kz = by.get(("kazoo", g["n"]))
        nan = float("nan")
        p50 = ratio(g["handover_s"]["p50"], kz["handover_s"]["p50"]) if kz else nan
        p95 = ratio(g["handover_s"]["p95"], kz["handover_s"]["p95"]) if kz else nan
        pairs = per_n.get(str(g["n"]), {}).get("paired_app_to_kazoo", {}) if g["flavour"] == "app" else {}
        st = g["steady"]
        rows.append(
            [
                f"{'election' if g['flavour'] == 'app' else 'kazoo'} N={g['n']}",
                ms(g["handover_s"]["p50"]),
                ms(g["handover_s"]["p95"]),
                ms(g["handover_s"]["max"]),
                num(p50, 2),
                num(p95, 2),
                num(pairs.get("p50"), 2),
                num(pairs.get("p95"), 2),
                ms(g.get("stamped_s", {}).get("p50")),
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
            "p95/kazoo",
            "paired p50",
            "paired p95",
            "stamped p50 ms",
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
    interleaved = result["config"].get("interleaved")
    text += (
        "\n(p50..max: signal -> the new term's first file visible (by "
        f"{result['config'].get('visible_by', 'its written_at')}); p50/kazoo, p95/kazoo: of the"
        "\n distributions; paired: round by round (the two groups ran together, rounds interleaved);"
        "\n stamped: -> the file's written_at;"
        + (" steady: the app's group alone, kazoo's = both alive less the app's;" if interleaved else "")
        + "\n"
    )
    text += " txn: zxids; failed: writes that failed, e.g. creates on an existing node;"
    text += " notif: watchers reached;"
    text += "\n requests: processed by the server, pings apart; net: less the steady rate over the window"
    text += " (both groups alive);" if interleaved else ";"
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
