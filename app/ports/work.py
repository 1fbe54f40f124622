"""The work port: what the leader does while, and only while, it surely leads.

Two implementations: the file writer (``app.adapters.file_work``: one file per ``leader-timeout``,
the default) and the command runner (``app.adapters.command_work``: the user's ``--exec`` command,
started once per term and kept running). The Leader state drives either the same way, on the
machine thread:

* ``begin(epoch)`` when a term starts, before anything else;
* ``step(epoch, valid_until=...)`` once per ``period(lease)``, each time right after a confirmation
  of leadership that stays valid until ``valid_until`` (monotonic): the work may act only until
  then. The first step of a term runs under the create that made us leader.
* ``stop(reason)`` the moment leadership ends or is in doubt: it returns only once the work has
  stopped (a command's whole process group is dead), and never lets it run past the last
  ``valid_until`` it was given. Leader calls it before it releases the leader node, so a
  successor's work never overlaps ours. Idempotent.
* ``ended()``: the work stopped by itself (a command exited), which the Leader handles by resigning.
  Implementations call the ``wake`` callback they were given when that happens, so that the Leader
  looks at once.

Guarantees asked of every implementation: nothing is done as leader outside a ``step`` window
extended by confirmations; ``stop`` is bounded by the last ``valid_until`` (less a margin).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Protocol


class Outcome(enum.Enum):
    """What became of one step."""

    DONE = "done"  # useful work done (a file published; the command started or runs on)
    FAILED = "failed"  # nothing done; the next step tries again (counts toward max-write-failures)
    RETRY = "retry"  # the lease ran out before the work was made visible: confirm again, retry at once
    FENCED = "fenced"  # a newer term has worked: we are stale; the leader resigns


@dataclass(frozen=True)
class Step:
    """One step's result. ``why`` explains a failure (for /readyz); ``newer`` is the fencing epoch;
    ``order`` the directory's publish counter after a published file (standbys' progress signal)."""

    outcome: Outcome
    why: str = ""
    newer: int | None = None
    order: int | None = None


@dataclass(frozen=True)
class Ended:
    """The work ended without being asked to: how, and after how long."""

    code: str  # the exit status ("0", "1", ...) or the signal that ended it ("SIGSEGV")
    ran_seconds: float
    stopped: bool  # True: our own dead-man stopped it (the lease ran out unconfirmed)

    @property
    def succeeded(self) -> bool:
        return self.code == "0"


class Work(Protocol):
    kind: str  # "files" or "exec", for /status and logs
    # Whether a standby can see this work's progress (the directory's publish counter): the
    # command runner has none to show, so standbys then judge the leader by its node alone.
    shows_progress: bool

    def prepare(self) -> int:
        """Make the work's resources usable (Init); return how many leftovers were removed."""
        ...

    def period(self, lease: float) -> float:
        """How often the leader confirms and steps, given the lease of one confirmation."""
        ...

    def begin(self, epoch: int) -> None:
        """A term with ``epoch`` starts (a term resumed with the same epoch continues)."""
        ...

    def step(self, epoch: int, *, valid_until: float) -> Step:
        """Do (or go on doing) the work under a confirmation valid until ``valid_until``."""
        ...

    def stop(self, reason: str) -> None:
        """Stop the work now; return once it has stopped. Safe to call when nothing runs."""
        ...

    def kill_now(self) -> None:
        """Last act before the process leaves without stopping (a second signal, the shutdown
        watchdog): kill whatever of the work still runs, at once, taking no lock and writing no log
        (the thread that holds one may be what is stuck). Safe from any thread."""
        ...

    def ended(self) -> Ended | None:
        """The work's end since it began, if it ended by itself; None while it runs (or never ran)."""
        ...

    def running(self) -> bool:
        """True while the work runs (a command's child is alive; files: a term is being worked)."""
        ...

    def describe(self) -> dict[str, Any]:
        """What /status shows about the work."""
        ...
