"""Chaos runs: one fault at a time on an :class:`~tests.chaos.election.Election`, measured and checked.

:meth:`Chaos.run` waits for a steady election, injects one fault of :data:`tests.chaos.faults.FAULTS`
(its :meth:`~tests.chaos.faults.base.Fault.inject`), waits for the election to settle, and returns a
:class:`tests.chaos.model.FaultResult`: the figures measured and every invariant
(:mod:`tests.chaos.invariants`) that did not hold, the fault's own promise and its own findings
among them. After a failure every fault's heal runs; :meth:`Chaos.recover` then brings the election
back for the next fault (the soak), :meth:`Chaos.finish` stops it and checks it at rest. The pytest
tests and the soak (``python -m tests.chaos.soak``) both go through it; :func:`plan` says which
faults can run here.

With ``work="exec"`` the evidence is the heartbeat children's, and the no-overlap rule (each run's
last beat before the next run's first) takes the audit's place; only the faults in
:data:`tests.chaos.faults.EXEC_FAULTS` run so.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import time

from tests.chaos.election import Election
from tests.chaos.evidence import analyse, audit
from tests.chaos.faults import EXEC_FAULTS, FAULTS, Fault
from tests.chaos.invariants import (
    Figures,
    as_promised,
    audit_clean,
    beat_figures,
    beat_overlap,
    exits_as_expected,
    file_figures,
    leadership_held,
    no_overlap,
    no_tracebacks,
    recovered_in_time,
)
from tests.chaos.model import WAIT, Before, FaultResult, Outcome, Promise
from tests.e2e.heartbeat_child import terms
from tools.leader_files import observe
from tools.replicas import Replica
from tools.waiting import wait_for


class Chaos(Election):
    """An election and the faults run on it (see the module's docstring)."""

    def close(self) -> None:
        """Undo everything, whatever state it is in (replicas are SIGKILLed)."""
        for replica in self.cluster.replicas:
            if replica.alive:
                with contextlib.suppress(OSError):
                    os.kill(replica.pid, signal.SIGCONT)
        self.clear_faults()
        self.cluster.kill_all()
        for relays in self.relays.values():
            for relay in relays:
                relay.close()
        if self._kazoo is not None:
            with contextlib.suppress(Exception):
                self._kazoo.stop()
                self._kazoo.close()
        if self.tmpfs is not None:
            self.tmpfs.unmount()

    def clear_faults(self) -> None:
        """Every fault's heal: no firewall rule, held syscall, filler or read-only mount is left."""
        for fault in FAULTS.values():
            fault.heal(self)

    def recover(self) -> None:
        """After a failed run: clear every fault, heal ZooKeeper, restart dead or stuck replicas (and
        those a fault left with other flags or environment)."""
        self.clear_faults()
        self.zk.heal()
        odd = set(self.spawn_overrides) | set(self.spawn_env)
        self.spawn_overrides, self.spawn_env = {}, {}
        for replica in self.current():
            if replica.identity in odd:
                replica.kill()
            if replica.alive:
                with contextlib.suppress(OSError):
                    os.kill(replica.pid, signal.SIGCONT)
                if replica.status() is not None:
                    continue
                replica.kill()
            self._spawn(replica.identity).wait_serving(WAIT)
        self.cluster.wait_for_sole_leader(WAIT)

    def finish(self) -> list[str]:
        """SIGTERM every replica; return what went wrong (an exit status not 0, a dirty audit)."""
        problems = []
        replicas = [r for r in self.current() if r.alive]
        for replica in replicas:
            replica.send(signal.SIGTERM)
        codes = self.cluster.wait_exits(replicas, WAIT)
        problems += [f"{name} exited {code} after SIGTERM" for name, code in codes.items() if code != 0]
        if self.beat_dir is not None:
            problems += no_overlap(self._beats())
            problems += no_tracebacks(self._log_text(since_mark=False))
            return problems
        result = audit(self.file_dir, self.capacity, live=False)
        problems += [f"final audit: {v}" for v in result.violations]
        files, unreadable = observe(self.file_dir)
        problems += unreadable + analyse(files).problems
        problems += no_tracebacks(self._log_text(since_mark=False))
        return problems

    # -- one fault --------------------------------------------------------------------------------
    def run(self, name: str) -> FaultResult:
        """Inject the fault ``name`` into a steady election and check everything after it; an
        exception (a wait that timed out) is a violation, after which every fault is healed."""
        fault = FAULTS[name]
        result = FaultResult(name, self.zk.kind, self.count)
        began = time.monotonic()
        try:
            self._run(fault, result)
        except Exception as exc:
            result.violations.append(f"{type(exc).__name__}: {exc}".splitlines()[0][:400])
            result.details["error"] = f"{type(exc).__name__}: {exc}"[:4000]
            with contextlib.suppress(Exception):
                self.clear_faults()
        result.duration_s = time.monotonic() - began
        return result

    def _run(self, fault: Fault, result: FaultResult) -> None:
        self._mark_logs()  # what was logged before this fault is not this fault's
        before = self.before()
        result.leader_before, result.epoch_before = before.leader.identity, before.epoch
        outcome = fault.inject(self, before)
        result.violations += outcome.violations
        result.details.update(outcome.details)
        promise = fault.promise

        leader, epoch, recovered = self.settle(outcome.cleared_at)
        if outcome.recovered_s is not None:
            recovered = outcome.recovered_s
        result.leader_after, result.epoch_after, result.recovered_s = leader.identity, epoch, recovered
        late = recovered_in_time(recovered, promise)
        if late:
            result.details["views_while_settling"] = self.views[-12:]
            result.violations += late
        self._hold(leader, epoch, result)
        if self.beat_dir is not None:
            self._check_beats(before, outcome, promise, result, epoch)
            return

        files, unreadable = observe(self.file_dir)
        analysis = analyse(files)
        result.violations += unreadable + analysis.problems
        result.overlap_s, result.stale_writes = analysis.overlap_s, analysis.stale_writes
        self._figures(file_figures(files, before.epoch, outcome, epoch), promise, result)
        # Exits first: a replica killed inside its write leaves a temporary file that only the next
        # start removes (as in Kubernetes), so the audit runs once the killed ones are back.
        self._check_exits(outcome, result)

        checked = audit(self.file_dir, self.capacity, live=True)
        result.audit, result.audit_violations = checked.summary, len(checked.violations)
        result.violations += audit_clean(checked.violations)
        result.details["audit_output"] = checked.output[-2000:] if not checked.ok else ""
        result.violations += no_tracebacks(self._log_text())
        result.details.update(
            {
                "leader_entries": self.count_events("leadership_acquired"),
                "write_errors_logged": self.count_events("write_error"),
                "fenced_writes": self.count_events("fenced"),
            }
        )

    def _check_beats(
        self, before: Before, outcome: Outcome, promise: Promise, result: FaultResult, epoch: int
    ) -> None:
        """The exec share's evidence, from the children's heartbeats: the no-overlap rule (it takes
        the audit's place), new terms, the hand-over and the longest time no child beat."""
        processes = self._beats()
        result.violations += no_overlap(processes)
        result.overlap_s, result.stale_writes = beat_overlap(processes)
        figures = beat_figures(processes, before.epoch, outcome, epoch)
        if promise.expect == "same-term":
            # Under --exec a suspended connection stops the child at once (issue 10); whether the
            # leader then starts it again in the same term is not promised, so only safety is.
            result.details["same_term"] = not figures.new_terms
            promise = Promise("any", promise.handover_bound, promise.recover_bound)
        self._figures(figures, promise, result)
        self._check_exits(outcome, result)
        result.audit = "n/a (exec)"
        result.violations += no_tracebacks(self._log_text())
        runs = terms(processes)
        result.details.update(
            {
                "leader_entries": self.count_events("leadership_acquired"),
                "children": len(
                    {r.child.pid for r in runs if r.epoch is not None and r.epoch >= before.epoch}
                ),
                "work_stops_logged": self.count_events("work_stopping"),
            }
        )

    @staticmethod
    def _figures(figures: Figures, promise: Promise, result: FaultResult) -> None:
        """Record the figures, and check them against the promise."""
        result.new_terms, result.no_leader_s = figures.new_terms, figures.no_leader_s
        result.handover_s = figures.handover_s
        assert result.leader_after is not None and result.epoch_after is not None
        result.violations += as_promised(
            promise,
            figures,
            (result.leader_before, result.epoch_before),
            (result.leader_after, result.epoch_after),
        )

    def _hold(self, leader: Replica, epoch: int, result: FaultResult, ticks: int = 5) -> None:
        """Once settled, the same leader leads, and only its term writes, for a few ticks."""
        count = self.work_done(epoch)
        wait_for(
            lambda: self.work_done(epoch) >= count + ticks, WAIT, f"{ticks} more ticks of work of {epoch}"
        )
        result.violations += leadership_held(
            leader.identity, epoch, self.cluster.sole_leader() is leader, self._epochs()
        )

    def _check_exits(self, outcome: Outcome, result: FaultResult) -> None:
        exited = {r.identity: r.returncode for r in self.current() if not r.alive}
        result.exits.update(exited)
        result.violations += exits_as_expected(exited, outcome.expected_exits)
        # As its orchestrator would, start again what was meant to go, and let it pass Init (which
        # removes the leftovers of a write it was killed in).
        for identity in result.exits:
            again = self._spawn(identity)
            again.wait_serving(WAIT)
            wait_for(functools.partial(_past_init, again), WAIT, f"{identity} to pass Init after its restart")


def _past_init(replica: Replica) -> bool:
    return (replica.status() or {}).get("state") not in (None, "Init")


def plan(
    zk_kind: str, names: list[str] | None = None, work: str = "files"
) -> tuple[list[str], dict[str, str]]:
    """The faults that can run here (with ``work``), in catalogue order, and why the others cannot."""
    runnable, skipped = [], {}
    for name in names or list(FAULTS):
        if work == "exec" and name not in EXEC_FAULTS:
            skipped[name] = "not in the exec share (see EXEC_FAULTS)"
            continue
        reason = FAULTS[name].unavailable(zk_kind)
        if reason:
            skipped[name] = reason
        else:
            runnable.append(name)
    return runnable, skipped
