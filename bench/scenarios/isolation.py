"""Scenario 3, isolation margin: the leader frozen or cut off -> its last write vs its session's expiry.

Two app replicas, each reaching ZooKeeper through its own relay (``tools.relay``). Whoever leads
is the victim of the round, at a random phase of its write cycle:

* **freeze**: SIGSTOP (a long GC pause, a stalled VM); SIGCONT half a second *after* the server
  expired its session, which is the dangerous moment: a process that resumes between its check
  and its write would write while another replica leads;
* **cut**: its relay black-holes both directions (a partition); healed half a second after expiry.

The server's log gives the moment it expired the victim's session (milliseconds, truncated, so a
margin read from it is never flattering); a separate kazoo client watching the leader node gives
a second clock. The victim's last write is the highest ``written_at`` among its term's files (and,
to catch a write stamped before a freeze but landing after it, their ``ctime``). The margin is
expiry minus last write; it must be positive in every round. After a round the victim recovers on
its own (Failover -> Init -> Attempter) and the other replica, now leader, is the next victim.

Then one probe: the leader is frozen at random moments (each thawed within a millisecond) until it
is caught holding the storage's fence lock (the bench asks for the POSIX lock itself: it is busy),
kept frozen for 10 s, and the other replica's fate is recorded (did it write, how many fence-lock
failures and terms), and whether the victim publishes a file after its session expired once thawed.

A round in which the other replica cannot write while the victim is isolated (say, the victim was
frozen holding the storage's fence lock) is recorded as "not taken over", with the successor's
fence-lock failures and when a new leader finally wrote after the victim was restored.
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from kazoo.protocol.states import EventType, WatchedEvent

from bench.common import ms, proc_stat, summary, table
from bench.fleet import APP, Group, app_log_events
from bench.scenarios import RunContext
from bench.scenarios._handover import leader_session
from bench.scenarios._skeleton import (
    IN_TURN,
    fraction,
    launched,
    make_result,
    measure,
    series_ms,
    spread,
    values,
    verdict,
)
from tools import leader_files
from tools.leader_files import parse_time
from tools.relay import Relay
from tools.waiting import wait_for

NAME = "isolation"
TITLE = "3. Isolation margin (leader frozen or cut off: its last write vs the server's session expiry)"
TICK_MS = 200
SESSION_TIMEOUT = 2.0
LEADER_TIMEOUT = 0.1
MODES = ("freeze", "cut")
FENCE_LOCK_NAME = ".election-fence.lock"  # app.adapters.fs_fence.LOCK_NAME (absent before the fence)


def _watch_deletion(group: Group) -> tuple[threading.Event, list[float]]:
    fired = threading.Event()
    when: list[float] = []

    def on_event(event: WatchedEvent) -> None:
        if event.type == EventType.DELETED:
            when.append(time.time())
            fired.set()

    group.connect_observer().exists(f"{group.path}/leader", watch=on_event)
    return fired, when


def _left_leader_after(log_path: Path, since: float) -> bool:
    for event in app_log_events(log_path):
        left = event.get("event") == "transition" and event.get("from") == "Leader"
        if left and parse_time(event["time"]) > since:
            return True
    return False


def _round(
    ctx: RunContext, zk: Any, group: Group, relays: dict[str, Relay], mode: str, session_timeout: float
) -> dict[str, Any]:
    group.wait_ready()
    time.sleep(ctx.rng.uniform(0.5, 0.5 + LEADER_TIMEOUT))
    victim, newest = group.leader()
    session = leader_session(group)
    deleted, deleted_at = _watch_deletion(group)
    offset = zk.log_offset()
    t_fault = time.time()
    if mode == "freeze":
        victim.proc.send_signal(signal.SIGSTOP)  # type: ignore[union-attr]
    else:
        relays[victim.identity].cut()
    # A successor may be unable to take over while the victim is isolated (e.g. frozen while it holds
    # the storage's fence lock): that is a finding, recorded, not a failure of the benchmark.
    takeover_wait = max(session_timeout * 5, 10.0)
    try:
        nxt = group.wait_next_leader(newest.epoch, timeout=takeover_wait)
    except TimeoutError:
        nxt = None
    deleted.wait(5)
    expiry = wait_for(lambda: zk.expiries(offset, near=t_fault).get(session), 5.0, "the expiry log line")
    time.sleep(max(0.0, expiry + 0.5 - time.time()))
    t_restore = time.time()
    if mode == "freeze":
        victim.proc.send_signal(signal.SIGCONT)  # type: ignore[union-attr]
    else:
        relays[victim.identity].heal()
    late = None
    if nxt is None:
        try:
            late = group.wait_next_leader(newest.epoch, timeout=30.0)
        except TimeoutError:
            late = None
    wait_for(lambda: _left_leader_after(victim.log_path, t_fault), 20.0, f"{victim.identity} to leave Leader")
    time.sleep(0.2)  # a write racing the transition would have landed by now
    files = [f for f in leader_files.of_term(group.file_dir, newest.epoch) if f.identity == victim.identity]
    last = max(files, key=lambda f: f.written_at)
    last_ctime = max(f.published for f in files)
    after_fault = [f for f in files if f.written_at > t_fault]
    successor = next(c for c in group.contenders.values() if c.identity != victim.identity)
    blocked = _log_messages_after(successor.log_path, t_fault, "fence lock")
    return {
        "mode": mode,
        "victim": victim.identity,
        "session": f"0x{session:x}" if session else None,
        "fault_at": t_fault,
        "expired_after_fault_s": expiry - t_fault,
        "watch_deleted_after_fault_s": (deleted_at[0] - t_fault) if deleted_at else None,
        "new_leader_after_fault_s": nxt.written_at - t_fault if nxt else None,
        "took_over_while_isolated": nxt is not None,
        "new_leader_after_restore_s": (late.written_at - t_restore) if late else None,
        "successor_fence_lock_failures": blocked,
        "last_write_after_fault_s": last.written_at - t_fault,
        "writes_after_fault": len(after_fault),
        "restored_after_expiry_s": t_restore - expiry,
        "margin_s": expiry - last.written_at,
        "margin_ctime_s": expiry - last_ctime,
        "files_in_term": len(files),
    }


def _log_messages_after(log_path: Path, since: float, needle: str) -> int:
    return sum(
        1
        for event in app_log_events(log_path)
        if needle in str(event.get("message", "")) and parse_time(event["time"]) > since
    )


def _lock_held_by_other(lock_path: Path) -> bool | None:
    """True if another process holds the POSIX lock on ``lock_path`` (None: no such file)."""
    try:
        fd = os.open(lock_path, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return True
        raise
    else:
        return False
    finally:
        os.close(fd)  # releases our lock, if we took it


def _probe_frozen_in_lock(
    ctx: RunContext, zk: Any, group: Group, session_timeout: float, tries: int = 2000
) -> dict[str, Any]:
    """Freeze the leader at random moments until it is caught holding the storage's fence lock
    (each miss is thawed within a millisecond), keep it frozen well past its session's expiry, and
    record what the other replica could do meanwhile and what happens at the thaw."""
    lock_path = group.file_dir / FENCE_LOCK_NAME
    group.wait_ready()
    victim, newest = group.leader()
    session = leader_session(group)
    offset = zk.log_offset()
    caught_after = None
    for attempt in range(1, tries + 1):
        time.sleep(ctx.rng.uniform(0.0, LEADER_TIMEOUT))
        victim.proc.send_signal(signal.SIGSTOP)  # type: ignore[union-attr]
        wait_for(lambda: (proc_stat(victim.pid) or ["?"])[0] == "T", 2.0, "the stop", interval=0.0002)
        held = _lock_held_by_other(lock_path)
        if held:
            caught_after = attempt
            break
        victim.proc.send_signal(signal.SIGCONT)  # type: ignore[union-attr]
        if held is None:
            return {"caught": False, "reason": f"no {FENCE_LOCK_NAME} in file-dir (no fence in this app)"}
    if caught_after is None:
        return {"caught": False, "reason": f"not caught holding the lock in {tries} tries"}
    t_fault = time.time()
    hold = max(session_timeout * 5, 10.0)
    try:
        during = group.wait_next_leader(newest.epoch, timeout=hold)
    except TimeoutError:
        during = None
    time.sleep(max(0.0, t_fault + hold - time.time()))
    expiry = zk.expiries(offset, near=t_fault).get(session)
    t_thaw = time.time()
    victim.proc.send_signal(signal.SIGCONT)  # type: ignore[union-attr]
    try:
        after = group.wait_next_leader(newest.epoch, timeout=30.0) if during is None else during
    except TimeoutError:
        after = None
    time.sleep(1.0)
    successor = next(c for c in group.contenders.values() if c.identity != victim.identity)
    victim_files = [
        f for f in leader_files.of_term(group.file_dir, newest.epoch) if f.identity == victim.identity
    ]
    late_publish = [f.name for f in victim_files if expiry is not None and f.published > expiry]
    return {
        "caught": True,
        "tries": caught_after,
        "victim": victim.identity,
        "held_frozen_s": t_thaw - t_fault,
        "expired_after_fault_s": None if expiry is None else expiry - t_fault,
        "successor_wrote_while_frozen": during is not None,
        "successor_first_file_after_fault_s": None if during is None else during.written_at - t_fault,
        "first_new_file_after_thaw_s": None
        if after is None or during is not None
        else after.published - t_thaw,
        "successor_fence_lock_failures": _log_messages_after(successor.log_path, t_fault, "fence lock"),
        "successor_resignations": _log_messages_after(successor.log_path, t_fault, "resign"),
        "successor_leadership_terms": _log_messages_after(successor.log_path, t_fault, "leading with epoch"),
        "victim_files_published_after_expiry": late_publish,
        "victim_log_after_thaw": [
            str(e.get("message", ""))[:160]
            for e in app_log_events(victim.log_path)
            if parse_time(e["time"]) > t_thaw and e.get("event") in ("write_error", "fenced", "transition")
        ][:6],
    }


def run(ctx: RunContext) -> dict[str, Any]:
    rounds = ctx.pick_rounds(full=20, quick=1)
    session_timeout = ctx.sized(SESSION_TIMEOUT, 1.0)
    started = time.time()
    with ctx.zookeeper(NAME, tick_ms=TICK_MS) as zk:
        relays = {f"app-{i:03d}": Relay(zk.address) for i in (1, 2)}
        group = Group(
            APP,
            2,
            zk.address,
            f"/bench/{NAME}",
            ctx.workdir / NAME,
            ctx.app_src,
            session_timeout=session_timeout,
            extra={"leader-timeout": f"{int(LEADER_TIMEOUT * 1000)}ms", "failover-timeout": "5m"},
        )
        group.zk_for = {name: relay.address for name, relay in relays.items()}
        try:
            with launched(group):
                rows = measure(
                    MODES,
                    rounds,
                    lambda mode, _r: _round(ctx, zk, group, relays, mode, session_timeout),
                    IN_TURN,
                )
                probe = {"caught": False, "reason": "not run in --quick"}
                if not ctx.quick:
                    probe = _probe_frozen_in_lock(ctx, zk, group, session_timeout)
        finally:
            for relay in relays.values():
                relay.close()
    out = {}
    for mode in MODES:
        mine = [r for r in rows if r["mode"] == mode]
        out[mode] = {
            "rounds": len(mine),
            **{
                key: summary(values(mine, key))
                for key in ("margin_s", "margin_ctime_s", "last_write_after_fault_s", "expired_after_fault_s")
            },
            "positive": sum(1 for r in mine if min(r["margin_s"], r["margin_ctime_s"]) > 0),
            "took_over_while_isolated": sum(1 for r in mine if r["took_over_while_isolated"]),
            "successor_blocked_rounds": sum(1 for r in mine if not r["took_over_while_isolated"]),
            "new_leader_after_fault_s": summary(values(mine, "new_leader_after_fault_s")),
        }
    return make_result(
        ctx,
        started,
        config={
            "rounds": rounds,
            "zk_tick_ms": TICK_MS,
            "session_timeout_s": session_timeout,
            "leader_timeout_s": LEADER_TIMEOUT,
            "replicas": 2,
            "lease_s": session_timeout * 2 / 3,
        },
        summary={
            **out,
            "target_positive_every_round": all(out[m]["positive"] == out[m]["rounds"] for m in MODES),
            "frozen_holding_fence_lock": probe,
        },
        rounds=rows,
    )


def _row(mode: str, st: dict[str, Any]) -> list[Any]:
    """One fault's line of the table: the margin's spread, the last write's, the expiry, the successor."""
    return [
        mode,
        st["rounds"],
        *spread(st["margin_s"], ("min", "p50", "max")),
        ms(st["margin_ctime_s"]["min"]),
        *spread(st["last_write_after_fault_s"], ("p50", "max")),
        ms(st["expired_after_fault_s"]["p50"]),
        ms(st["new_leader_after_fault_s"]["p50"]),
        fraction(st["took_over_while_isolated"], st["rounds"]),
        fraction(st["positive"], st["rounds"]),
    ]


def report(result: dict[str, Any]) -> str:
    cfg = result["config"]
    s = result["summary"]
    rows = [_row(mode, s[mode]) for mode in MODES]
    text = table(
        f"{TITLE}; session timeout {cfg['session_timeout_s']:g} s, leader-timeout "
        f"{cfg['leader_timeout_s'] * 1000:.0f} ms",
        [
            "fault",
            "rounds",
            "margin min ms",
            "p50 ms",
            "max ms",
            "ctime min ms",
            "last write p50 ms",
            "last write max ms",
            "expiry p50 ms",
            "successor p50 ms",
            "taken over",
            "positive",
        ],
        rows,
    )
    text += (
        "\n(last write, expiry, successor's first file: after the fault; taken over: the other replica wrote"
        "\n while the victim was still isolated)  target: margin positive in every round: "
        + verdict(s["target_positive_every_round"])
    )
    probe = s.get("frozen_holding_fence_lock") or {}
    if probe.get("caught"):
        after = probe.get("first_new_file_after_thaw_s")
        text += (
            f"\nprobe, leader frozen while holding the fence lock (caught after {probe['tries']} random "
            f"freezes), kept frozen {probe['held_frozen_s']:.1f} s: the other replica "
            + (
                f"wrote {probe['successor_first_file_after_fault_s'] * 1000:.0f} ms after the freeze"
                if probe["successor_wrote_while_frozen"]
                else "could not write at all "
                f"({probe['successor_fence_lock_failures']} 'fence lock' failures, "
                f"{probe['successor_leadership_terms']} terms begun, "
                f"{probe['successor_resignations']} resignation messages); first new file "
                + (f"{after * 1000:.0f} ms after the thaw" if after is not None else "never")
            )
            + "; victim files published after its session expired: "
            + str(len(probe["victim_files_published_after_expiry"]))
        )
    elif probe:
        text += f"\nprobe, leader frozen while holding the fence lock: {probe.get('reason')}"
    for r in result["rounds"]:
        if not r.get("took_over_while_isolated", True):
            after = r.get("new_leader_after_restore_s")
            text += (
                f"\n  round {r['round']} ({r['mode']}): no successor wrote while {r['victim']} was isolated "
                f"({r['successor_fence_lock_failures']} 'fence lock' failures in its log); first new file "
                + (f"{after * 1000:.0f} ms after the victim was restored" if after is not None else "never")
            )
    return text


def plot(result: dict[str, Any], directory: Path) -> list[Path]:
    from bench import plots  # noqa: PLC0415 - matplotlib is optional

    return [
        plots.distribution(
            directory / "isolation-margin.png",
            series_ms(result["rounds"], "margin_s", {mode: mode for mode in MODES}, by="mode"),
            title="Isolation margin: server's session expiry minus the isolated leader's last write "
            f"(session {result['config']['session_timeout_s']:g} s)",
            xlabel="margin, ms (must be > 0)",
            vlines={"0": 0.0},
        )
    ]
