"""Soak: N random faults in a row on one election, from a seeded RNG, then a table per fault.

    python -m tests.chaos.soak --seed S --faults N [--replicas R] [--zk ensemble|standalone]
                               [--only NAME,NAME...] [--exec-share F] [--json PATH] [--workdir DIR]
                               [--keep] [--log-level debug]

One ZooKeeper (a 3-node ensemble by default, so that every fault of the suite is possible) and R
replicas (3 by default) run for the whole soak; faults are drawn from those that can run here (the
root-only ones, a loopback cut and a bad disk, are left out with the reason when not root). After
each fault every invariant of :class:`tests.chaos.runner.Chaos` is checked; replicas that were meant
to go are started again, as an orchestrator would. Each fault prints one line; at the end a table
gives, per fault: rounds (times injected), rounds that violated something, audit violations, the
longest time without a leader, the longest hand-over and the longest overlap between an old and a
new leader (which must be 0).

The exec share (issue 10): each drawn fault that :data:`tests.chaos.faults.EXEC_FAULTS` lists goes,
with probability ``--exec-share`` (default 0.25, from an RNG of its own so that the file faults of a
seed stay what they were), to a second election whose replicas run the heartbeat child under
``--exec``; those faults run after the others, once the first election has been stopped and checked
(so that only one election loads the machine at a time), and are checked by the no-overlap rule on
the children's heartbeats. Their rows in the table are named ``FAULT+exec``. An app without
``--exec`` runs every fault on files and says so.

Exit status: 0 if every invariant held, 1 if any was violated, 2 if the soak could not run.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.chaos.evidence import app_has
from tests.chaos.faults import FAULTS
from tests.chaos.model import FaultResult
from tests.chaos.runner import Chaos, plan
from tools.faults.network import remove_stale_cuts
from tools.zookeeper import java_available
from tools.zookeeper_target import ZK_KINDS, ZkTarget

CAPACITY = 500  # retention keeps the directory bounded over a long soak


def table(results: list[FaultResult]) -> list[dict[str, Any]]:
    """One row per fault kind (in catalogue order), then a row of totals."""

    def row(name: str, rows: list[FaultResult]) -> dict[str, Any]:
        def longest(key: str) -> float | None:
            values = [getattr(r, key) for r in rows if getattr(r, key) is not None]
            return max(values) if values else None

        return {
            "fault": name,
            "rounds": len(rows),
            "violated": sum(1 for r in rows if not r.ok),
            "audit_violations": sum(r.audit_violations for r in rows),
            "no_leader_max_s": longest("no_leader_s"),
            "handover_max_s": longest("handover_s"),
            "overlap_max_s": longest("overlap_s"),
            "stale_writes": sum(r.stale_writes for r in rows),
            "new_terms": sum(r.new_terms for r in rows),
        }

    rows = [
        row(
            name if work == "files" else f"{name}+{work}",
            [r for r in results if (r.fault, r.work) == (name, work)],
        )
        for work in ("files", "exec")
        for name in FAULTS
    ]
    return [r for r in rows if r["rounds"]] + [row("all", results)]


def render(rows: list[dict[str, Any]]) -> str:
    def s(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    header = (
        f"{'fault':<26}{'rounds':>7}{'violated':>9}{'audit':>7}{'no leader s':>13}"
        f"{'hand-over s':>13}{'overlap s':>11}{'stale':>7}{'terms':>7}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        if r["fault"] == "all":
            lines.append("-" * len(header))
        lines.append(
            f"{r['fault']:<26}{r['rounds']:>7}{r['violated']:>9}{r['audit_violations']:>7}"
            f"{s(r['no_leader_max_s']):>13}{s(r['handover_max_s']):>13}{s(r['overlap_max_s']):>11}"
            f"{r['stale_writes']:>7}{r['new_terms']:>7}"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos.soak", description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, required=True, help="seed of the fault sequence")
    parser.add_argument("--faults", type=int, required=True, help="how many faults to inject")
    parser.add_argument("--replicas", type=int, default=3, help="replicas (default 3; the suite uses 3 to 5)")
    parser.add_argument("--zk", choices=ZK_KINDS, default="ensemble", help="ZooKeeper (default ensemble)")
    parser.add_argument("--only", default="", help="comma-separated fault names to draw from")
    parser.add_argument(
        "--exec-share",
        type=float,
        default=0.25,
        help="share of the faults (of those that can) run on replicas with --exec (default 0.25)",
    )
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--workdir", type=Path, help="work directory (default: a new temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, files)")
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info"], help="the replicas' --log-level"
    )
    args = parser.parse_args(argv)
    if args.faults < 1:
        parser.error("--faults must be at least 1")
    if not 0.0 <= args.exec_share <= 1.0:
        parser.error("--exec-share must be between 0 and 1")
    if not 1 <= args.replicas <= 9:
        parser.error("--replicas must be between 1 and 9")
    unknown = [n for n in args.only.split(",") if n and n not in FAULTS]
    if unknown:
        parser.error(f"unknown fault(s) {unknown}; known: {', '.join(FAULTS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # The soak's own kazoo client (it deletes the leader node) would print every dropped connection.
    logging.getLogger("kazoo").addHandler(logging.NullHandler())
    logging.getLogger("kazoo").propagate = False
    reason = java_available()
    if reason is not None:
        print(f"soak: cannot run a local ZooKeeper: {reason}", file=sys.stderr)
        return 2
    rng = random.Random(args.seed)
    remove_stale_cuts()  # firewall rules of an earlier run that was killed before its finally
    only = [n for n in args.only.split(",") if n] or None
    runnable, skipped = plan(args.zk, only)
    if not runnable:
        print(f"soak: no fault can run here: {skipped}", file=sys.stderr)
        return 2
    exec_runnable: list[str] = []
    exec_note = None
    if args.exec_share > 0:
        if app_has("run", "--exec"):
            exec_runnable, _ = plan(args.zk, only, work="exec")
            exec_note = f"{args.exec_share:g} of {', '.join(exec_runnable) or 'none'} with --exec"
        else:
            exec_note = "none with --exec: the app has no --exec"
    exec_rng = random.Random(f"exec-share-{args.seed}")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="election-soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"soak: seed {args.seed}, {args.faults} fault(s), {args.replicas} replicas, ZooKeeper {args.zk}")
    print(f"soak: drawing from {', '.join(runnable)}")
    for name, why in skipped.items():
        print(f"soak: left out {name}: {why}")
    if exec_note is not None:
        print(f"soak: exec share: {exec_note}")
    print(f"soak: work directory {workdir}", flush=True)

    started, began = time.strftime("%Y-%m-%dT%H:%M:%S%z"), time.monotonic()
    results: list[FaultResult] = []
    final: list[str] = []
    aborted: str | None = None
    deferred: list[tuple[int, str]] = []  # (index, fault) drawn for the exec share
    zk = ZkTarget(args.zk, workdir / "zookeeper")

    def election(work: str, names: list[str]) -> Chaos:
        files = work == "files"
        return Chaos(
            workdir / ("election" if files else f"election-{work}"),
            zk,
            replicas=args.replicas,
            election_path="/chaos" if files else f"/chaos-{work}",
            relays=any("relays" in FAULTS[n].needs for n in names),
            tmpfs=any("tmpfs" in FAULTS[n].needs for n in names),
            capacity=CAPACITY,
            rng=rng,
            work=work,
            log_level=args.log_level,
        )

    def run_faults(chaos: Chaos, faults: list[tuple[int, str]]) -> str | None:
        """Run ``faults`` in order; the reason to stop, if one came up."""
        for index, name in faults:
            result = chaos.run(name)
            result.work = chaos.work
            results.append(result)
            print(f"[{index}/{args.faults} {time.monotonic() - began:7.1f}s] {result.line()}", flush=True)
            if not result.ok:
                try:
                    chaos.recover()
                except Exception as exc:
                    what = name if chaos.work == "files" else f"{name}+{chaos.work}"
                    why = f"could not recover after fault {index} ({what}): {exc}"
                    print(f"soak: {why}", flush=True)
                    return why
        return None

    chaos = election("files", runnable)
    started_files = False  # the file election starts with its first fault (an exec-only soak has none)
    try:
        zk.start()
        for index in range(1, args.faults + 1):
            name = rng.choice(runnable)
            if name in exec_runnable and exec_rng.random() < args.exec_share:
                deferred.append((index, name))
                continue
            if not started_files:
                chaos.start()
                started_files = True
            aborted = run_faults(chaos, [(index, name)])
            if aborted is not None:
                break
        if aborted is None and started_files:
            final = chaos.finish()
        chaos.close()
        if aborted is None and deferred:
            chaos = election("exec", exec_runnable)
            print(f"soak: {len(deferred)} fault(s) with --exec", flush=True)
            try:
                chaos.start()
            except Exception as exc:
                aborted = f"the election with --exec did not start: {exc}"
            else:
                aborted = run_faults(chaos, deferred)
            if aborted is None:
                final += [f"exec: {p}" for p in chaos.finish()]
    except KeyboardInterrupt:
        aborted = "interrupted"
    finally:
        chaos.close()
        zk.stop()

    rows = table(results)
    ok = aborted is None and not final and all(r.ok for r in results) and len(results) == args.faults
    duration = time.monotonic() - began
    print()
    print(render(rows))
    for problem in final:
        print(f"soak: after the last fault: {problem}")
    verdict = (
        "every invariant held" if ok else "INVARIANTS VIOLATED" if aborted is None else f"ABORTED: {aborted}"
    )
    print(f"soak: {len(results)} fault(s) in {duration:.1f}s, seed {args.seed}: {verdict}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        report = {
            "seed": args.seed,
            "faults": args.faults,
            "replicas": args.replicas,
            "zk": args.zk,
            "started_at": started,
            "duration_s": round(duration, 3),
            "left_out": skipped,
            "exec_share": {"share": args.exec_share, "note": exec_note, "faults": [i for i, _ in deferred]},
            "ok": ok,
            "aborted": aborted,
            "final_problems": final,
            "table": rows,
            "results": [r.to_json() for r in results],
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"soak: results in {args.json}")
    if ok and args.workdir is None and not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    elif not ok:
        print(f"soak: logs and files kept in {workdir}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
