"""What must hold after every fault, and the figures measured, as functions over the evidence.

The evidence is what the run leaves behind: the files in ``file-dir`` (:func:`tests.chaos.evidence.observe`)
or, for the exec share, the heartbeat children's records (:mod:`tests.e2e.heartbeat_child`); the
replicas' exits and logs; and the fault's :class:`~tests.chaos.model.Outcome` and
:class:`~tests.chaos.model.Promise`. Each check returns the violations it found, as the one-line
sentences a soak prints (an empty list when it held); nothing here waits or touches a process.

The invariants, in the order the runner applies them:

* :func:`recovered_in_time`: one agreed leader writing within the promise's recovery bound;
* :func:`leadership_held`: once settled, the same leader, and only its term, for a few ticks;
* the files' own reading (:func:`tests.chaos.evidence.analyse`): files parse, one writer per epoch, no
  older term written or published after a newer one began; for the exec share :func:`no_overlap`;
* :func:`as_promised`: a new term when the leader was gone, the same term when it was not, and the
  hand-over within its bound;
* :func:`exits_as_expected`: nobody exited but those the fault stopped, with the status it meant;
* :func:`audit_clean`: ``election audit`` passes on ``file-dir``;
* :func:`no_tracebacks`: no replica logged one.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from tests.chaos.evidence import longest_gap
from tests.chaos.model import TRACEBACK, Outcome, Promise
from tests.e2e.heartbeat_child import Process, overlap_seconds, overlaps, terms
from tools.leader_files import LeaderFile


@dataclass(frozen=True)
class Figures:
    """What was measured across one fault (see :class:`tests.chaos.model.FaultResult`)."""

    new_terms: int
    no_leader_s: float | None
    handover_s: float | None


def recovered_in_time(recovered: float, promise: Promise) -> list[str]:
    """One agreed leader was writing within the promise's recovery bound of the fault's clearing."""
    if recovered > promise.recover_bound:
        return [
            f"one agreed leader writing only {recovered:.3f}s after the fault cleared "
            f"(bound {promise.recover_bound:g}s)"
        ]
    return []


def leadership_held(leader: str, epoch: int, still_sole_leader: bool, epochs: Iterable[int]) -> list[str]:
    """After settling on ``leader@epoch``: it is still the sole leader, and no later term began."""
    problems = []
    if not still_sole_leader:
        problems.append(f"leadership did not hold after settling on {leader}@{epoch}")
    later = [e for e in epochs if e > epoch]
    if later:
        problems.append(f"terms {later} began after settling on {leader}@{epoch}")
    return problems


def as_promised(
    promise: Promise, figures: Figures, before: tuple[str | None, int | None], after: tuple[str, int]
) -> list[str]:
    """The term went on or changed as promised, and a hand-over came within its bound."""
    problems = []
    if promise.expect == "new-term" and figures.new_terms == 0:
        problems.append("no new term began although the leader was gone")
    if promise.expect == "same-term" and figures.new_terms:
        problems.append(
            f"needless leadership change: {before[0]}@{before[1]} -> "
            f"{after[0]}@{after[1]} ({figures.new_terms} new term(s))"
        )
    bound = promise.handover_bound
    if bound is not None and figures.handover_s is not None and figures.handover_s > bound:
        problems.append(f"hand-over took {figures.handover_s:.3f}s (bound {bound:g}s)")
    return problems


def exits_as_expected(exited: Mapping[str, int | None], expected: Mapping[str, int]) -> list[str]:
    """Only the replicas the fault stopped exited, each with the status the fault meant."""
    problems = []
    for identity, code in exited.items():
        want = expected.get(identity)
        if want is None:
            problems.append(f"{identity} exited with status {code}")
        elif code != want:
            problems.append(f"{identity} exited with {code}, expected {want}")
    return problems


def audit_clean(violations: Sequence[str]) -> list[str]:
    """``election audit`` found nothing (its violations, as the suite reports them)."""
    return [f"audit: {v}" for v in violations]


def no_tracebacks(logs: Mapping[str, str]) -> list[str]:
    """No replica's log (of this fault, or of the whole run) holds a Python traceback."""
    return [f"{name} logged a traceback" for name, text in logs.items() if TRACEBACK in text]


def no_overlap(processes: list[Process]) -> list[str]:
    """Exec share: each run's last beat came before the next run's first (the audit's stand-in)."""
    return [f"overlap: {p}" for p in overlaps(processes)]


# -- the figures ------------------------------------------------------------------------------------
def file_figures(files: list[LeaderFile], before_epoch: int, outcome: Outcome, epoch: int) -> Figures:
    """From the files: newer terms that wrote, the longest gap between files across the fault (until
    ``epoch``, the term settled on, wrote after the clearing) and the fault -> the next term's first."""
    newer = sorted({f.epoch for f in files if f.epoch > before_epoch})
    handover = None
    if newer:
        first = min((f for f in files if f.epoch == newer[0]), key=lambda f: f.written_at)
        handover = first.written_at - outcome.t0
    return Figures(len(newer), longest_gap(files, outcome.t0, outcome.cleared_at, epoch), handover)


def beat_figures(processes: list[Process], before_epoch: int, outcome: Outcome, epoch: int) -> Figures:
    """The same figures from the heartbeats: a term "writes" while its child beats."""
    runs = terms(processes)
    newer = sorted({r.epoch for r in runs if r.epoch is not None and r.epoch > before_epoch})
    handover = None
    if newer:
        handover = min(r.first_wall for r in runs if r.epoch == newer[0]) - outcome.t0
    beats = sorted(t for p in processes for t in p.beats_wall)
    end = min(
        (t for p in processes if p.epoch == epoch for t in p.beats_wall if t > outcome.cleared_at),
        default=None,
    )
    no_leader = None
    if end is not None:
        window = [max([t for t in beats if t <= outcome.t0], default=outcome.t0)]
        window += [t for t in beats if window[0] < t <= end]
        no_leader = max((b - a for a, b in itertools.pairwise(window)), default=0.0)
    return Figures(len(newer), no_leader, handover)


def beat_overlap(processes: list[Process]) -> tuple[float, int]:
    """Exec share: the longest overlap of two runs, and how many runs beat too long."""
    problems = overlaps(processes)
    return overlap_seconds(processes), sum(1 for p in problems if " beat " in p)
