"""What the leaders left in file-dir, and what it proves: write order, overlaps, gaps; plus the audit.

The files are read by ``tools.leader_files`` (the app's own parser); this module judges them.

Write order is judged two ways, because a file's name only says which term it belongs to, not when it
appeared: by ``written_at`` (taken by the writer just before it writes) and by the inode's change
time (``st_ctime_ns``: set when the file is linked to its final name, i.e. published). A stale leader
that publishes after a newer term began shows as an older epoch after a newer one in either order.
When every file carries ``order`` (the directory's publish counter, issue 9), that replaces
``written_at``: the writers' wall clocks may disagree (a replica on a skewed clock), the counter and
the kernel's change times do not.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from tools.leader_files import LeaderFile
from tools.replicas import run_app


@dataclass
class Analysis:
    """The order and timing of the terms found in a directory."""

    terms: dict[int, list[LeaderFile]]  # epoch -> files, in name order
    problems: list[str]
    overlap_s: float  # longest time an older term still wrote after a newer one began (must be 0)
    stale_writes: int  # files of an older term published or stamped after a newer term's first file


def analyse(files: list[LeaderFile]) -> Analysis:
    terms: dict[int, list[LeaderFile]] = {}
    for record in files:
        terms.setdefault(record.epoch, []).append(record)
    problems: list[str] = []
    for epoch, term in terms.items():
        writers = sorted({f.identity for f in term})
        if len(writers) > 1:
            problems.append(f"epoch {epoch} written by {writers}")
        times = [f.written_at for f in term]
        if times != sorted(times):
            problems.append(f"epoch {epoch}: sequence numbers not in written_at order")
    epochs = sorted(terms)
    overlap = 0.0
    stale = 0
    by_order = bool(files) and all(f.order is not None for f in files)
    if by_order:
        orders = sorted(f.order or 0 for f in files)
        if len(set(orders)) != len(orders):
            problems.append("two files carry the same order")
    for index, older in enumerate(epochs):
        newer = epochs[index + 1 :]
        if not newer:
            break
        first_published = min(f.published_ns for e in newer for f in terms[e])
        if by_order:
            first_order = min(f.order or 0 for e in newer for f in terms[e])
            late = [
                f for f in terms[older] if (f.order or 0) > first_order or f.published_ns > first_published
            ]
            overlap = max(overlap, (max(f.published_ns for f in terms[older]) - first_published) / 1e9)
            if late:
                stale += len(late)
                problems.append(
                    f"epoch {older} ({terms[older][0].identity}) published {len(late)} file(s) after a "
                    f"newer term began: {', '.join(f.name for f in late[:3])}"
                )
            continue
        first_written = min(f.written_at for e in newer for f in terms[e])
        late = [f for f in terms[older] if f.written_at > first_written or f.published_ns > first_published]
        if late:
            stale += len(late)
            problems.append(
                f"epoch {older} ({terms[older][0].identity}) wrote {len(late)} file(s) after a newer term "
                f"began: {', '.join(f.name for f in late[:3])}"
            )
        last = terms[older]
        overlap = max(
            overlap,
            max(f.written_at for f in last) - first_written,
            (max(f.published_ns for f in last) - first_published) / 1e9,
        )
    return Analysis(terms, problems, max(overlap, 0.0), stale)


def longest_gap(files: list[LeaderFile], since: float, until: float, epoch: int) -> float | None:
    """Longest time between consecutive files (by ``written_at``) across a fault: from the last file
    written at or before ``since`` to the first file of ``epoch`` (the term that leads once the fault
    is over) written after ``until``; None if that file does not exist."""
    times = sorted(f.written_at for f in files)
    end = min((f.written_at for f in files if f.epoch == epoch and f.written_at > until), default=None)
    if end is None:
        return None
    before = [t for t in times if t <= since]
    start = before[-1] if before else since
    window = [start, *(t for t in times if start < t <= end)]
    return max((b - a for a, b in itertools.pairwise(window)), default=0.0)


# --------------------------------------------------------------------------------------------------
# election audit
# --------------------------------------------------------------------------------------------------


@cache
def app_has(command: str, flag: str | None = None) -> bool:
    """Whether ``python -m app <command>`` exists (and knows ``flag``): the suite adapts to the app."""
    done = run_app(command, "--help")
    return done.returncode == 0 and (flag is None or flag in done.stdout)


@dataclass
class Audit:
    available: bool
    ok: bool
    violations: list[str]
    output: str

    @property
    def summary(self) -> str:
        if not self.available:
            return "unavailable"
        return "clean" if self.ok else f"{len(self.violations)} violation(s)"


def _run_audit(file_dir: Path, capacity: int | None) -> Audit:
    args = [f"--file-dir={file_dir}", "--json"]
    if capacity is not None:
        args.append(f"--storage-capacity={capacity}")
    done = run_app("audit", *args)  # in an environment without ELECTION_* variables
    output = (done.stdout + done.stderr).strip()
    if done.returncode == 0:
        return Audit(True, True, [], output)
    violations: list[str] = []
    try:
        report: Any = json.loads(done.stdout)
        found = report.get("violations") if isinstance(report, dict) else None
        if isinstance(found, list):
            violations = [v if isinstance(v, str) else json.dumps(v, sort_keys=True) for v in found]
    except ValueError:
        pass
    return Audit(True, False, violations or [f"exit {done.returncode}: {output[-500:]}"], output)


def audit(file_dir: Path, capacity: int | None, *, live: bool, attempts: int = 4) -> Audit:
    """Run ``election audit`` on ``file_dir``.

    On a live directory a leader may be between writing a temporary file and publishing it, or
    between a write and its retention; a violation counts only if it is still there on every one of
    ``attempts`` runs. On a quiet directory (``live=False``) one run decides.
    """
    if not app_has("audit"):
        return Audit(False, True, [], "`python -m app audit` does not exist yet")
    result = _run_audit(file_dir, capacity)
    for _ in range(attempts - 1 if live else 0):
        if result.ok:
            break
        again = _run_audit(file_dir, capacity)
        persistent = [v for v in again.violations if v in result.violations]
        result = again if again.ok else Audit(True, not persistent, persistent, again.output)
    return result
