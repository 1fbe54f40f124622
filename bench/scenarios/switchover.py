"""Scenario 11, planned switchover: a request -> the target's first file, beside the graceful hand-over.

One group of app replicas per N (3 and 50; ``--quick``: 3) on one ZooKeeper. Every round measures
one of three ways of moving leadership to the next replica in the queue, the three interleaved
round by round (the order rotated), so a slow patch of the machine hits them alike:

* **graceful**: SIGTERM the leader -> the successor's first file (scenario 1's round,
  :func:`bench.scenarios._handover.handover_round`; the signalled replica is started again);
* **protocol**: the request written with kazoo (a versioned ``set`` of ``<path>/switchover`` from
  ``{}`` to a request naming the leader's epoch and ``to`` = the next in the queue, as the command
  writes it) -> the target's first file: the protocol alone, without any process start;
* **cli**: the real command, ``python -m app switchover --to <next>``, spawned by the benchmark ->
  the target's first file, and -> the command's exit (it waits until the target leads). The
  server's request log says when it committed the command's request, which splits the command's
  own start-up (spawn -> request committed) from the protocol's part (-> the first file).

The request moment is the wall clock just before the ``set`` (protocol), the spawn (cli) or the
``kill`` (graceful). Before every round: all N registered and queued, the switchover node idle, then
a random 0.2-0.6 s pause, as in scenario 1. A round also checks that the target, and nobody else,
took the next epoch, and (switchover) that the old leader is still running.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import ms, num, summary, table
from bench.fleet import APP, Group, child_env
from bench.scenarios import RunContext
from bench.scenarios._handover import (
    app_breakdown,
    by_type_median,
    handover_round,
    net_requests,
    server_work,
    steady_fleet,
    watch_deletion,
)
from bench.scenarios._queue import EXPIRES_IN, idle, request_payload, wait_settled
from bench.scenarios._skeleton import (
    fleet_config,
    launched,
    make_result,
    measure,
    paired,
    spread,
    spread_header,
    values,
)
from bench.zk import BenchZooKeeper
from tools.waiting import wait_for

NAME = "switchover"
TITLE = "11. Planned switchover (request -> the target's first file) beside the graceful hand-over"
METHODS = ("graceful", "protocol", "cli")
LABELS = {
    "graceful": "graceful (SIGTERM)",
    "protocol": "switchover, request by kazoo",
    "cli": "switchover, `election switchover --to`",
}
REPORTED_RE = re.compile(r"\bin (\d+(?:\.\d+)?) ?ms\b")


# --------------------------------------------------------------------------
# arithmetic (tests/unit/test_bench_switchover.py)
# --------------------------------------------------------------------------


def round_figures(
    *,
    requested_at: float,
    target: str,
    new_leader: str,
    first_written_at: float,
    request_committed_at: float | None = None,
    node_gone_at: float | None = None,
    exited_at: float | None = None,
) -> dict[str, Any]:
    """One switchover round's figures, in seconds after the request (``requested_at``: wall time
    just before the write or the spawn). ``handover_s`` is to the first file's ``written_at``;
    ``startup_s`` the requester's own share (-> ZooKeeper committed the request's write; for the
    command: its start, connection, reads and write), ``after_request_s`` the rest (the protocol's
    share); ``takeover_s`` from the old node's deletion. A figure whose moment is unknown is None,
    never a guess."""

    def since(moment: float | None, origin: float | None = requested_at) -> float | None:
        return None if moment is None or origin is None else moment - origin

    return {
        "target": target,
        "new_leader": new_leader,
        "target_led": new_leader == target,
        "handover_s": first_written_at - requested_at,
        "startup_s": since(request_committed_at),
        "after_request_s": since(first_written_at, request_committed_at),
        "node_deleted_s": since(node_gone_at),
        "takeover_s": since(first_written_at, node_gone_at),
        "exit_s": since(exited_at),
    }


def reported_ms(output: str) -> float | None:
    """The hand-over time the command printed (``r1 (epoch E) -> r2 (epoch F) in N ms``), if any."""
    match = REPORTED_RE.search(output)
    return float(match.group(1)) if match else None


def _ratio(value: float, base: float) -> float | None:
    """value / base, or None where either is missing (NaN: no rounds of that method)."""
    if math.isnan(value) or math.isnan(base) or base <= 0:
        return None
    return value / base


def _no_slower(value: float, base: float) -> bool | None:
    """value <= base; None (no verdict) where either was not measured."""
    ratio = _ratio(value, base)
    return None if ratio is None else ratio <= 1.0


def summarise(
    rows: Sequence[dict[str, Any]], steady: dict[str, dict[str, float]] | None = None
) -> dict[str, Any]:
    """Per N: each method's distributions, the switchover's ratios to the graceful hand-over (of the
    medians, and round by round), the verdict "no slower" (the protocol's median hand-over at most
    the graceful one's; the command's with its start-up taken out, and with it in), and ZooKeeper's
    work per round (``steady``: per N, the idle rates whose share of each window is taken out)."""
    out: dict[str, Any] = {}
    for n in sorted({r["n"] for r in rows}):
        mine = {m: [r for r in rows if r["n"] == n and r["method"] == m] for m in METHODS}
        idle_rates = (steady or {}).get(str(n))
        stats = {m: summary(values(mine[m], "handover_s")) for m in METHODS}
        graceful_p50 = stats["graceful"]["p50"]
        switchovers = mine["protocol"] + mine["cli"]
        cli_net = summary(values(mine["cli"], "after_request_s"))

        out[str(n)] = {
            "handover_s": stats,
            "cli_startup_s": summary(values(mine["cli"], "startup_s")),
            "cli_after_request_s": cli_net,
            "cli_exit_s": summary(values(mine["cli"], "exit_s")),
            "old_left_leader_s": {m: summary(values(mine[m], "old_left_leader_s")) for m in METHODS},
            "new_entered_leader_s": {m: summary(values(mine[m], "new_entered_leader_s")) for m in METHODS},
            "cli_reported_s": summary(v / 1000 for v in values(mine["cli"], "reported_ms")),
            "node_deleted_s": {m: summary(values(mine[m], "node_deleted_s")) for m in METHODS},
            "takeover_s": {m: summary(values(mine[m], "takeover_s")) for m in METHODS},
            "ratio_p50_protocol_to_graceful": _ratio(stats["protocol"]["p50"], graceful_p50),
            "ratio_p50_cli_to_graceful": _ratio(stats["cli"]["p50"], graceful_p50),
            "ratio_p50_cli_net_to_graceful": _ratio(cli_net["p50"], graceful_p50),
            "paired_protocol_to_graceful": paired(mine["protocol"], mine["graceful"], "handover_s"),
            "protocol_no_slower": _no_slower(stats["protocol"]["p50"], graceful_p50),
            "cli_net_no_slower": _no_slower(cli_net["p50"], graceful_p50),
            "cli_no_slower": _no_slower(stats["cli"]["p50"], graceful_p50),
            "rounds": {m: len(mine[m]) for m in METHODS},
            "zk": {
                m: {
                    "transactions": summary(values(mine[m], "zk_transactions")),
                    "notifications": summary(values(mine[m], "zk_notifications")),
                    "failed_writes": summary(values(mine[m], "zk_failed_writes")),
                    "net_requests": summary(
                        v for v in (net_requests(r, idle_rates) for r in mine[m]) if v is not None
                    ),
                    "requests_by_type_p50": by_type_median(mine[m]),
                }
                for m in METHODS
            },
            "target_missed": sum(1 for r in switchovers if not r["target_led"]),
            "old_leader_exited": sum(1 for r in switchovers if not r.get("old_alive", True)),
            "cli_exit_codes": sorted({r["exit_code"] for r in mine["cli"] if "exit_code" in r}),
        }
    return out


# --------------------------------------------------------------------------
# rounds
# --------------------------------------------------------------------------


def switchover_round(
    group: Group,
    *,
    method: str,
    ctx: RunContext,
    zk: BenchZooKeeper,
    steady: dict[str, float] | None = None,
    timeout: float = 30.0,
) -> dict[str, Any]:
    """Move leadership to the next in the queue by a request (``protocol``) or the command (``cli``),
    with ZooKeeper's work from just before the request until the server is quiet again."""
    queue = wait_settled(group)
    time.sleep(ctx.rng.uniform(0.2, 0.6))
    client = group.connect_observer()
    target = queue.next
    old = group.contenders[queue.leader]
    gone = watch_deletion(group)
    done: dict[str, Any] = {}
    request_offset = zk.log_offset()
    before = zk.snapshot()
    if method == "protocol":
        data, stat = client.get(f"{group.path}/switchover")
        if json.loads(data or b"{}") != {}:
            raise RuntimeError("a switchover is pending before the round")
        body = request_payload(queue, target)
        t0 = time.time()
        client.set(f"{group.path}/switchover", body, version=stat.version)
    else:
        command = [
            sys.executable,
            "-m",
            "app",
            "switchover",
            f"--to={target}",
            f"--zk-servers={group.zk_address}",
            f"--election-path={group.path}",
            f"--wait={timeout:g}s",
        ]
        t0 = time.time()
        proc = subprocess.Popen(
            command,
            cwd=ctx.app_src,
            env=child_env(ctx.app_src),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

        def reap() -> None:
            out, err = proc.communicate()
            done.update(exited_at=time.time(), exit_code=proc.returncode, output=(out + err).strip())

        waiter = threading.Thread(target=reap, name="switchover-command", daemon=True)
        waiter.start()
    nxt = group.wait_next_leader(queue.epoch, timeout)
    if method == "cli":
        waiter.join(timeout + 5)
        if "exit_code" not in done:
            proc.kill()
            waiter.join(5)
    # The next round starts from an idle node: the new leader clears the request after its first step.
    wait_for(lambda: idle(client, group.path), 10.0, "the switchover request cleared", interval=0.005)
    cleared_seen = time.time()
    work = server_work(zk, before, request_offset, steady=steady)
    # When the server committed the request, from its own log rather than from a watch of ours: while
    # the command starts, this process gets little CPU and its watches fire late. Steady state writes
    # nothing, and every other write of a round follows the request, so it is the round's first setData.
    writes = zk.processed_at(request_offset, "setData", near=t0)
    row: dict[str, Any] = {
        "method": method,
        "n": group.size,
        "old_leader": queue.leader,
        "from_epoch": queue.epoch,
        "new_epoch": nxt.epoch,
        "requested_at": t0,
        **round_figures(
            requested_at=t0,
            target=target,
            new_leader=nxt.identity,
            first_written_at=nxt.written_at,
            request_committed_at=writes[0] if writes else None,
            node_gone_at=gone[0] if gone else None,
            exited_at=done.get("exited_at"),
        ),
        "old_alive": old.alive,
    }
    if method == "cli":
        row["exit_code"] = done.get("exit_code")
        row["output"] = done.get("output", "")
        row["reported_ms"] = reported_ms(row["output"])
    row["cleared_seen_s"] = cleared_seen - t0
    row.update(work)
    # From both replicas' logs: when the old leader left Leader, when the target entered it.
    row.update(app_breakdown(group, queue.leader, nxt.identity, t0))
    return row


def graceful_round(
    group: Group, ctx: RunContext, zk: BenchZooKeeper, steady: dict[str, float] | None = None
) -> dict[str, Any]:
    """Scenario 1's round (SIGTERM the leader, start it again), from the same settled start."""
    queue = wait_settled(group)
    row = handover_round(group, rng=ctx.rng, observe=True, zk=zk, steady=steady)
    row.update(method="graceful", target=queue.next, target_led=row["new_leader"] == queue.next)
    return row


def cli_available(app_src: Path) -> str | None:
    """None if the app under test has ``election switchover``, else why not (one line)."""
    done = subprocess.run(
        [sys.executable, "-m", "app", "switchover", "--help"],
        cwd=app_src,
        env=child_env(app_src),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode == 0:
        return None
    lines = (done.stderr or done.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit {done.returncode}"


def run(ctx: RunContext) -> dict[str, Any]:
    sizes = ctx.sized([3, 50], [3])
    rounds = ctx.pick_rounds(full=20, quick=2)
    no_cli = cli_available(ctx.app_src)
    methods = [m for m in METHODS if not (m == "cli" and no_cli)]
    if no_cli:
        print(f"  no `election switchover` in the app under test ({no_cli}): the cli rounds are skipped")
    started = time.time()
    config = fleet_config(
        rounds, sizes=sizes, methods=methods, cli_unavailable=no_cli, expires_in_s=EXPIRES_IN
    )
    rows: list[dict[str, Any]] = []
    steadies: dict[str, dict[str, float]] = {}
    with ctx.zookeeper(NAME, request_log=True) as zk:
        for n in sizes:
            group = Group(
                APP, n, zk.address, f"/bench/{NAME}/n{n}", ctx.workdir / NAME / f"n{n}", ctx.app_src
            )
            with launched(group, start=None, stop_timeout=60.0):  # steady_fleet starts it
                # Idle replicas look now and then: their requests land in every round's window.
                _start_s, steady = steady_fleet(
                    ctx, zk, group, ctx.sized(10.0, 1.0), ready=lambda g: wait_settled(g, timeout=120.0)
                )
                steadies[str(n)] = steady

                def step(
                    method: str, _r: int, group: Group = group, steady: dict[str, float] = steady
                ) -> dict[str, Any]:
                    if method == "graceful":
                        return graceful_round(group, ctx, zk, steady)
                    return switchover_round(group, method=method, ctx=ctx, zk=zk, steady=steady)

                rows.extend(measure(methods, rounds, step))
            by_n = summarise(rows, steadies)[str(n)]
            print(
                f"  N={n:>3} p50 ms: "
                + ", ".join(f"{m} {ms(by_n['handover_s'][m]['p50'])}" for m in methods),
                flush=True,
            )
    summarised = {"by_n": summarise(rows, steadies)}
    return make_result(ctx, started, config=config, summary=summarised, rounds=rows, steady=steadies)


def _verdict(met: bool | None, ratio: float | None) -> str:
    if met is None or ratio is None:
        return "-"
    return "met" if met else f"MISSED ({num(ratio, 2)}x)"


def report(result: dict[str, Any]) -> str:
    by_n = result["summary"]["by_n"]
    rows = []
    for n, s in by_n.items():
        for m in METHODS:
            st = s["handover_s"][m]
            if not st["n"]:
                continue
            rows.append(
                [
                    f"{LABELS[m]}, N={n}",
                    st["n"],
                    *spread(st),
                    num(st["p50"] / s["handover_s"]["graceful"]["p50"], 2)
                    if s["handover_s"]["graceful"]["n"]
                    else "-",
                    ms(s["node_deleted_s"][m]["p50"]),
                    ms(s["takeover_s"][m]["p50"]),
                    ms(s["cli_startup_s"]["p50"]) if m == "cli" else "-",
                    ms(s["cli_exit_s"]["p50"]) if m == "cli" else "-",
                    num(s["zk"][m]["transactions"]["p50"], 0),
                    num(s["zk"][m]["failed_writes"]["p50"], 0),
                    num(s["zk"][m]["notifications"]["p50"], 0),
                    num(s["zk"][m]["net_requests"]["p50"], 0),
                ]
            )
    text = table(
        f"{TITLE}; one group per N, methods interleaved round by round",
        [
            "method",
            "rounds",
            *spread_header(),
            "p50 / graceful",
            "node gone p50 ms",
            "take-over p50 ms",
            "start-up p50 ms",
            "exit p50 ms",
            "txn",
            "failed",
            "notif",
            "net req",
        ],
        rows,
    )
    text += (
        "\n(hand-over: the request (set, spawn or kill) -> the target's first file's written_at;"
        "\n node gone: -> the old leader's node deleted, as a watching client hears it; take-over:"
        "\n node gone -> written_at; start-up: spawn -> ZooKeeper committed the command's request (its"
        "\n log, ms); exit: spawn -> the command exited; per round, p50: txn: zxids, failed: failed writes,"
        "\n notif: watchers reached, the observer's one or two included, net req: requests pings apart"
        "\n less the idle replicas' steady rate over the window)"
    )
    for n, s in by_n.items():
        paired_p = s["paired_protocol_to_graceful"]
        text += (
            f"\nN={n}: switchover by request / graceful, p50 {num(s['ratio_p50_protocol_to_graceful'], 2)}"
            f" (round by round p50 {num(paired_p['p50'], 2)}, p95 {num(paired_p['p95'], 2)}):"
            f" no slower {_verdict(s['protocol_no_slower'], s['ratio_p50_protocol_to_graceful'])};"
            f" the command less its start-up {ms(s['cli_after_request_s']['p50'])} ms:"
            f" {_verdict(s['cli_net_no_slower'], s['ratio_p50_cli_net_to_graceful'])};"
            f" with it: {_verdict(s['cli_no_slower'], s['ratio_p50_cli_to_graceful'])}"
        )
        text += (
            f"\n  target missed {s['target_missed']}, old leader exited {s['old_leader_exited']},"
            f" command exit codes {s['cli_exit_codes'] or '-'}, its own report p50"
            f" {ms(s['cli_reported_s']['p50'])} ms"
        )
        for m in METHODS:
            if s["handover_s"][m]["n"]:
                text += (
                    f"\n  {m}, p50 ms after the request: the old leader leaves Leader"
                    f" {ms(s['old_left_leader_s'][m]['p50'])}, its node gone"
                    f" {ms(s['node_deleted_s'][m]['p50'])},"
                    f" the new one enters Leader {ms(s['new_entered_leader_s'][m]['p50'])}, its first file"
                    f" {ms(s['handover_s'][m]['p50'])}"
                )
        for m in METHODS:
            kinds = s["zk"][m]["requests_by_type_p50"]
            if kinds:
                listed = ", ".join(f"{k} {v:g}" for k, v in kinds.items() if k != "ping")
                text += f"\n  requests per round by type (p50), {m}: {listed}"
    if result["config"].get("cli_unavailable"):
        text += f"\n(no cli rounds: {result['config']['cli_unavailable']})"
    return text


def plot(result: dict[str, Any], directory: Path) -> list[Path]:
    from bench import plots  # noqa: PLC0415 - matplotlib is optional

    series = {
        f"{LABELS[m]}, N={n}": [
            r["handover_s"] * 1000 for r in result["rounds"] if r["method"] == m and r["n"] == n
        ]
        for n in result["config"]["sizes"]
        for m in result["config"]["methods"]
    }
    return [
        plots.distribution(
            directory / "switchover.png",
            {k: v for k, v in series.items() if v},
            title="Planned switchover (request -> target's first file) and graceful hand-over, same run",
            xlabel="hand-over, ms (log scale)",
            log=True,
        )
    ]
