"""Scenario 9, exec: the leader runs a command; how fast it moves, and how soon a cut-off one stops.

Three wrappers run the same child, in the same run, each with two contenders:

* **ours**: ``election run --exec-stop-timeout=1s -- CHILD`` (ZooKeeper, session timeout 4 s);
* **kazoo Election**: ``bench/baselines/kazoo_exec.py``, the recipe with the child run in its
  leader function (same ZooKeeper, session timeout 4 s; on SIGTERM it stops the child, then
  closes the session);
* **etcdctl lock**: ``etcdctl lock --ttl=4 NAME -- CHILD`` on a local etcd (lease TTL 4 s).

The child (``bench/baselines/heartbeat.py``) appends the wall time to ``hb-<pid>-<ns>.log`` every
10 ms: its first line is when it started, its last when it was last alive. Every contender reaches
its server through its own relay (``tools.relay``), so that one can be cut off without root.

A **graceful** round (the wrappers one after another, the order rotated each round): wait until
one child runs and both contenders are queued, pause 0.2-0.6 s, SIGTERM the holder (the wrapper
process), and if it is still alive ``KILL_AFTER`` s later SIGKILL its process group: what the kubelet
does to a deleted pod after its grace period (``etcdctl lock`` ignores SIGTERM and SIGINT while its
command runs, so without this it never hands over). The round lasts until the successor's child has
started and the old child is gone, or is still running ``OVERLAP_WATCH`` s after the successor
started (an orphan).

A **cut** round (the three at once: the figures are seconds, not milliseconds): pause 0.5-1 s,
black-hole each holder's relay; until the old child is dead and the successor's child has
started, or ``DEADLINE`` s after the cut ("still running at the deadline"). A child still running
then gets its holder's relay healed and ``HEAL_WATCH`` s more: does reaching the server again (and
hearing that the session or lease is gone) stop it? Then the bench kills whatever is left (old
child, old holder), heals the relay and starts the holder again.

Per round: the old child's death (first poll that finds it gone, 5 ms polls) and last heartbeat,
the successor's first heartbeat, all after the fault; overlap = the old child's last heartbeat is
not before the successor's first (or it was still running when the round ended).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import ms, num, summary, table
from bench.etcd import LocalEtcd, etcd_available
from bench.fleet import APP, BASELINES, KAZOO, Flavour, Group, app_log_events
from bench.scenarios import RunContext
from bench.scenarios._heartbeats import (
    heartbeat_dir,
    heartbeat_files,
    holder_of,
    kill_child,
    read_beats,
    running,
)
from bench.scenarios._skeleton import fraction, launched, make_result, no_plots, rotate, spread
from tools.leader_files import parse_time
from tools.relay import Relay
from tools.replicas import Process
from tools.waiting import WaitTimeoutError, poll_until, wait_for

NAME = "exec"
TITLE = "9. Exec (a child under leadership: SIGTERM -> successor's child; cut -> child dead)"
TICK_MS = 200
SESSION_TIMEOUT = 4.0  # the most a server with tickTime 200 grants
STOP_TIMEOUT = 1.0  # ours must fit (4/9) x 4 s - 0.25 s = 1.53 s; the kazoo wrapper uses the same
ETCD_TTL = 4
DEADLINE = 30.0
QUICK_DEADLINE = 10.0
OVERLAP_WATCH = 2.0
HEAL_WATCH = 5.0  # after the deadline of a cut, how long a healed holder is given to stop its child
KILL_AFTER = 5.0  # the grace before the SIGKILL of a holder that ignored SIGTERM (a pod's would be 30 s)
POLL = 0.005
KINDS = ("graceful", "cut")
SPREAD = ("p50", "p95", "max")  # the quantiles of the report's columns
SIZE = 2


def child_command(group: Group) -> list[str]:
    return [sys.executable, "-S", str(BASELINES / "heartbeat.py"), str(heartbeat_dir(group))]


def _server_for(group: Group, identity: str) -> str:
    return group.zk_for.get(identity, group.zk_address)


def _ours(group: Group, identity: str) -> list[str]:
    return [*APP.command(group, identity), "--", *child_command(group)]


def _kazoo(group: Group, identity: str) -> list[str]:
    return [
        sys.executable,
        str(BASELINES / "kazoo_exec.py"),
        f"--zk={_server_for(group, identity)}",
        f"--path={group.path}",
        f"--identity={identity}",
        f"--file-dir={group.file_dir}",
        f"--session-timeout={SESSION_TIMEOUT:g}",
        f"--stop-timeout={STOP_TIMEOUT:g}",
        "--",
        *child_command(group),
    ]


def _etcdctl(group: Group, identity: str) -> list[str]:
    return [
        "etcdctl",
        f"--endpoints={_server_for(group, identity)}",
        "lock",
        f"--ttl={ETCD_TTL}",
        group.path,
        "--",
        *child_command(group),
    ]


# The app and kazoo register as they do without a child: only the command line differs.
OURS = dataclasses.replace(APP, label="election --exec (ours)", build=_ours)
KAZOO_EXEC = dataclasses.replace(KAZOO, label="kazoo Election + subprocess", build=_kazoo)
ETCD_LOCK = Flavour("etcd", "etcdctl lock", _etcdctl, lambda path: path)
FLAVOURS = (OURS, KAZOO_EXEC, ETCD_LOCK)


@dataclass
class EtcdGroup(Group):
    """Contenders queued on an etcd lock: registered = the lock's keys (one per waiter)."""

    etcd: LocalEtcd | None = None

    def registered(self) -> int:
        assert self.etcd is not None
        return self.etcd.count_prefix(self.path + "/")


def round_figures(
    t0: float,
    old_last_beat: float | None,
    old_dead_at: float | None,
    new_first_beat: float | None,
    ended_at: float,
) -> dict[str, Any]:
    """What one round measured, in seconds after the fault ``t0``.

    ``old_dead_at`` is None if the old child still ran when the round ended (at ``ended_at``);
    ``new_first_beat`` None if no successor's child started. Overlap: the old child was seen alive
    at or after the successor's first beat, or it was still running once the successor had started.
    """
    still_running = old_dead_at is None
    overlap_s: float | None = None
    if new_first_beat is not None:
        alive_until = ended_at if still_running else (old_last_beat if old_last_beat is not None else t0)
        overlap_s = max(0.0, alive_until - new_first_beat)
    return {
        "child_dead_s": None if still_running else old_dead_at - t0,  # type: ignore[operator]
        "child_last_beat_s": None if old_last_beat is None else old_last_beat - t0,
        "still_running_at_end": still_running,
        "round_ended_s": ended_at - t0,
        "successor_started_s": None if new_first_beat is None else new_first_beat - t0,
        "gap_s": None if new_first_beat is None or old_last_beat is None else new_first_beat - old_last_beat,
        "overlap": bool(overlap_s) or (still_running and new_first_beat is not None),
        "overlap_s": overlap_s,
    }


def summarise(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The figures of one wrapper and one kind of fault over its rounds."""
    mine = list(rows)

    def pick(key: str) -> list[float]:
        return [r[key] for r in mine if r.get(key) is not None]

    return {
        "rounds": len(mine),
        "child_dead_s": summary(pick("child_dead_s")),
        "child_last_beat_s": summary(pick("child_last_beat_s")),
        "still_running_at_end": sum(1 for r in mine if r["still_running_at_end"]),
        "holder_killed": sum(1 for r in mine if r.get("holder_killed")),
        "survived_heal": sum(1 for r in mine if r.get("survived_heal")),
        "successor_started_s": summary(pick("successor_started_s")),
        "no_successor": sum(1 for r in mine if r["successor_started_s"] is None),
        "overlap_rounds": sum(1 for r in mine if r["overlap"]),
        "overlap_s": summary(pick("overlap_s")),
        "gap_s": summary(pick("gap_s")),
    }


# --------------------------------------------------------------------------
# rounds
# --------------------------------------------------------------------------


@dataclass
class Watch:
    """One wrapper's fault in progress: the old child, and the successor's once it appears."""

    group: Group
    relay: dict[str, Relay]
    kind: str
    holder: Process
    child: Path  # the old child's heartbeat file
    known: set[Path]
    t0: float = 0.0
    dead_at: float | None = None
    successor: Path | None = None
    successor_seen_at: float | None = None
    killed: bool = False  # the holder outlived KILL_AFTER and had its group SIGKILLed

    def poll(self, now: float) -> None:
        late = now - self.t0 >= KILL_AFTER
        if self.kind == "graceful" and late and not self.killed and self.holder.alive:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.holder.pid, signal.SIGKILL)
            self.killed = True
        if self.dead_at is None and not running(self.child):
            self.dead_at = now
        if self.successor is None:
            fresh = [path for path in heartbeat_files(heartbeat_dir(self.group)) if path not in self.known]
            started = [(beats[0], path) for path in fresh if (beats := read_beats(path))]
            if started:
                self.successor = min(started)[1]
                self.successor_seen_at = now

    def done(self, now: float, deadline: float) -> bool:
        if now >= deadline:
            return True
        if self.successor is None:
            return False
        if self.dead_at is not None:
            return True
        # Graceful: an old child still running this long after the successor's start is an orphan.
        assert self.successor_seen_at is not None
        return self.kind == "graceful" and now - self.successor_seen_at >= OVERLAP_WATCH

    def figures(self, ended_at: float) -> dict[str, Any]:
        old = read_beats(self.child)
        new = read_beats(self.successor) if self.successor is not None else []
        row = round_figures(
            self.t0, old[-1] if old else None, self.dead_at, new[0] if new else None, ended_at
        )
        extra = _stop_event(self.holder.log_path, self.t0) if self.group.flavour is OURS else {}
        return {
            "flavour": self.group.flavour.name,
            "kind": self.kind,
            "holder_killed": self.killed,
            **row,
            **extra,
        }


def wait_holder(group: Group, timeout: float = 90.0) -> tuple[Process, Path]:
    """Wait until every contender is queued and exactly one child runs, under a live contender."""
    directory = heartbeat_dir(group)
    seen: dict[str, Any] = {}

    def single_holder() -> tuple[Process, Path] | None:
        by_pid = {c.pid: c for c in group.contenders.values() if c.alive}
        children = [path for path in heartbeat_files(directory) if running(path)]
        seen.update(children=children, contenders=sorted(by_pid))
        holder = by_pid.get(holder_of(children[0], by_pid) or -1) if len(children) == 1 else None
        if holder is None or len(by_pid) != group.size:
            return None
        with contextlib.suppress(Exception):
            if group.registered() >= group.size and len(read_beats(children[0])) > 1:
                return holder, children[0]
        return None

    try:
        return wait_for(single_holder, timeout, "a single child under a live holder", interval=0.05)
    except WaitTimeoutError as exc:
        raise TimeoutError(
            f"{group.flavour.name}: no single child under a live holder after {timeout:.0f} s "
            f"(children {seen.get('children')}, contenders {seen.get('contenders')}); see {group.log_dir}"
        ) from exc


def begin(group: Group, relays: dict[str, Relay], kind: str) -> Watch:
    holder, child = wait_holder(group)
    known = set(heartbeat_files(heartbeat_dir(group)))
    return Watch(group, relays, kind, holder, child, known)


def strike(watch: Watch) -> None:
    watch.t0 = time.time()
    if watch.kind == "graceful":
        watch.holder.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
    else:
        watch.relay[watch.holder.identity].cut()


def follow(watches: list[Watch], deadline: float) -> list[dict[str, Any]]:
    """Poll until every watch is done (or its deadline), record each, then clean up.

    A cut-off holder's child that outlived the deadline gets one more chance: its relay is healed
    and it is watched ``HEAL_WATCH`` s more, to tell "stops late" (on reconnecting, on hearing its
    session or lease is gone) from "never stops".
    """
    pending = list(watches)
    rows: dict[int, dict[str, Any]] = {}
    while pending:
        now = time.time()
        for watch in list(pending):
            watch.poll(now)
            if watch.done(now, watch.t0 + deadline):
                rows[id(watch)] = watch.figures(now)
                pending.remove(watch)
        time.sleep(POLL)
    survivors = [w for w in watches if w.kind == "cut" and running(w.child)]
    for watch in survivors:
        watch.relay[watch.holder.identity].heal()
    poll_until(lambda: not any(running(w.child) for w in survivors), time.monotonic() + HEAL_WATCH, POLL)
    for watch in survivors:
        rows[id(watch)]["survived_heal"] = running(watch.child)
    for watch in watches:
        settle(watch)
    return [rows[id(w)] for w in watches]


def _stop_event(log_path: Path, t0: float) -> dict[str, Any]:
    """Ours: when and why the old holder stopped its child (its first ``work_stopping`` after t0)."""
    for event in app_log_events(log_path):
        if event.get("event") == "work_stopping" and parse_time(event["time"]) >= t0 - 0.001:
            return {"stop_reason": event.get("reason"), "stop_logged_s": parse_time(event["time"]) - t0}
    return {}


def settle(watch: Watch) -> None:
    """Kill what the round left (old child, old holder), heal the relay, start the holder again."""
    kill_child(watch.child)
    holder = watch.holder
    assert holder.proc is not None
    if watch.kind == "graceful":
        with contextlib.suppress(Exception):
            holder.proc.wait(15.0)
    if holder.alive:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(holder.pid, signal.SIGKILL)
    holder.proc.wait()
    watch.relay[holder.identity].heal()
    watch.group.spawn(holder.identity)


def _group(
    ctx: RunContext, flavour: Flavour, server: str, relays: dict[str, Relay], etcd: LocalEtcd
) -> Group:
    """The flavour's SIZE contenders on ``server``, each through its own relay."""
    common: dict[str, Any] = {
        "session_timeout": SESSION_TIMEOUT,
        "extra": {"exec-stop-timeout": f"{STOP_TIMEOUT:g}s"},
        "zk_for": {name: relay.address for name, relay in relays.items()},
    }
    workdir = ctx.workdir / NAME / flavour.name
    path = f"/bench/{NAME}/{flavour.name}"
    if flavour is ETCD_LOCK:
        return EtcdGroup(flavour, SIZE, server, path, workdir, ctx.app_src, **common, etcd=etcd)
    return Group(flavour, SIZE, server, path, workdir, ctx.app_src, **common)


def run(ctx: RunContext) -> dict[str, Any]:
    reason = etcd_available()
    if reason is not None:
        raise RuntimeError(reason)
    rounds = ctx.pick_rounds(full=20, quick=1)
    deadline = ctx.sized(DEADLINE, QUICK_DEADLINE)
    started = time.time()
    rows: list[dict[str, Any]] = []
    etcd = LocalEtcd(ctx.workdir / NAME / "etcd")
    with ctx.zookeeper(NAME, tick_ms=TICK_MS) as zk:
        etcd.start()
        servers = {f.name: etcd.address if f is ETCD_LOCK else zk.address for f in FLAVOURS}
        relays = {
            f.name: {f"{f.name}-{i:03d}": Relay(servers[f.name]) for i in range(1, SIZE + 1)}
            for f in FLAVOURS
        }
        fleet: list[Group] = []
        try:
            fleet.extend(_group(ctx, f, servers[f.name], relays[f.name], etcd) for f in FLAVOURS)
            with launched(*fleet, start=lambda g: g.start(first_alone=False)) as groups:
                for r in range(rounds):
                    for group in rotate(groups, r):
                        watch = begin(group, relays[group.flavour.name], "graceful")
                        time.sleep(ctx.rng.uniform(0.2, 0.6))
                        strike(watch)
                        rows.extend(dict(row, round=r) for row in follow([watch], deadline))
                    watches = [begin(g, relays[g.flavour.name], "cut") for g in groups]
                    time.sleep(ctx.rng.uniform(0.5, 1.0))
                    for watch in watches:
                        strike(watch)
                    rows.extend(dict(row, round=r) for row in follow(watches, deadline))
                    print(f"  round {r + 1}/{rounds} done", flush=True)
        finally:
            for group in fleet:
                _kill_children(group)
            for mine in relays.values():
                for relay in mine.values():
                    relay.close()
            etcd.stop()
    stats = {
        kind: {
            f.name: summarise(r for r in rows if r["kind"] == kind and r["flavour"] == f.name)
            for f in FLAVOURS
        }
        for kind in KINDS
    }
    return make_result(
        ctx,
        started,
        config={
            "rounds": rounds,
            "contenders_per_wrapper": SIZE,
            "zk_tick_ms": TICK_MS,
            "session_timeout_s": SESSION_TIMEOUT,
            "exec_stop_timeout_s": STOP_TIMEOUT,
            "etcd_lease_ttl_s": ETCD_TTL,
            "deadline_s": deadline,
            "overlap_watch_s": OVERLAP_WATCH,
            "kill_after_s": KILL_AFTER,
            "heal_watch_s": HEAL_WATCH,
            "heartbeat_period_s": 0.010,
            "labels": {f.name: f.label for f in FLAVOURS},
        },
        summary={
            **stats,
            "overlap_free": {
                kind: {f.name: stats[kind][f.name]["overlap_rounds"] == 0 for f in FLAVOURS} for kind in KINDS
            },
        },
        rounds=rows,
    )


def _kill_children(group: Group) -> None:
    """Whatever heartbeat child is still running (an orphan of etcdctl, say) is killed."""
    for path in heartbeat_files(heartbeat_dir(group)):
        kill_child(path)


def report(result: dict[str, Any]) -> str:
    cfg = result["config"]
    s = result["summary"]
    labels = cfg["labels"]
    graceful = []
    for name, label in labels.items():
        st = s["graceful"][name]
        graceful.append(
            [
                label,
                st["rounds"],
                *spread(st["successor_started_s"], SPREAD),
                *spread(st["child_dead_s"], SPREAD),
                fraction(st["holder_killed"], st["rounds"]),
                fraction(st["overlap_rounds"], st["rounds"]),
                ms(st["gap_s"]["min"]),
            ]
        )
    text = table(
        f"{TITLE}\ngraceful: SIGTERM the holder -> the successor's child's first heartbeat (ms)",
        [
            "wrapper",
            "rounds",
            "successor p50",
            "p95",
            "max",
            "old child dead p50",
            "p95",
            "max",
            f"SIGKILLed at {cfg['kill_after_s']:g} s",
            "overlap",
            "gap min",
        ],
        graceful,
    )
    cut = []
    secs = lambda v: num(v, 2)  # noqa: E731 - a formatter
    for name, label in labels.items():
        st = s["cut"][name]
        still = st["still_running_at_end"]
        cut.append(
            [
                label,
                st["rounds"],
                *spread(st["child_dead_s"], SPREAD, secs),
                fraction(still, st["rounds"]),
                fraction(st["survived_heal"], st["rounds"]),
                secs(st["child_last_beat_s"]["max"]) + (" (deadline)" if still else ""),
                *spread(st["successor_started_s"], SPREAD, secs),
                fraction(st["overlap_rounds"], st["rounds"]),
                secs(st["overlap_s"]["max"]),
            ]
        )
    text += "\n\n" + table(
        f"cut: the holder's relay black-holed -> its child dead; the successor's child (s after the cut; "
        f"deadline {cfg['deadline_s']:g} s)",
        [
            "wrapper",
            "rounds",
            "child dead p50",
            "p95",
            "max",
            "still running at deadline",
            f"and {cfg['heal_watch_s']:g} s after heal",
            "child ran max",
            "successor p50",
            "p95",
            "max",
            "overlap",
            "overlap max",
        ],
        cut,
    )
    text += (
        f"\n(session timeout {cfg['session_timeout_s']:g} s for ours and kazoo, etcd lease TTL "
        f"{cfg['etcd_lease_ttl_s']} s, ours with --exec-stop-timeout={cfg['exec_stop_timeout_s']:g}s; "
        "gap = successor's first beat - old child's last; overlap = the two children alive at once)"
    )
    return text


plot = no_plots
