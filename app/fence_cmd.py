"""``election fence``: the directory fence of our file writer, for the user's own scripts.

A command run by ``election run --exec`` receives its term's fencing token in ``ELECTION_EPOCH``. To
fence a resource of its own (a directory on a shared volume), a script asks this command before it
writes, on the same fence as our file writer (:mod:`app.adapters.fs_fence`: a POSIX lock on
``.election-fence.lock`` and the record ``.election-fence`` of the highest epoch that has written):

* **check form** ``election fence --dir DIR --epoch N``: under the lock, exit 0 if no newer epoch
  than N has written to DIR, recording N as the highest; exit 3 if a newer one has. The lock is
  released when the command returns, so ``election fence ... && write`` is check-then-act: a newer
  term that starts *between* the check and the write is not stopped by this check (its own first
  check will have recorded its epoch, so every later check of ours fails).
* **command form** ``election fence --dir DIR --epoch N -- CMD ARGS...``: the same check, then CMD
  runs *while the lock is held*, and the lock is released only once CMD has exited, so no writer of
  a newer epoch that also goes through the fence can interleave with it. The status is CMD's own
  (128 + the signal if a signal ended it).

What it does not guarantee: writers that bypass the fence are not stopped by it; a command form
whose ``election fence`` is SIGKILLed loses the lock at once, while CMD gets SIGKILL only as the
kernel reaps its parent (``PR_SET_PDEATHSIG``): a moment without the lock, unless CMD's own writes are
atomic (write a temporary, then rename).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from app.adapters.fs_fence import FenceState, FileFence
from app.config import ConfigError, parse_file_dir

EXIT_FENCED = 3
# Exit status of a command killed by a signal, as a shell reports it.
SIGNAL_EXIT_BASE = 128
_PR_SET_PDEATHSIG = 1
# SIGINT and SIGQUIT from a terminal reach the whole foreground group, so the command gets them
# anyway; SIGTERM and SIGHUP are what `election run` and a session leader send to the group.
_HELD_SIGNALS = (signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGHUP)


# czxid is a signed 64-bit zxid in ZooKeeper: no epoch is larger.
MAX_EPOCH = 2**63 - 1


def parse_epoch(text: str) -> int:
    """A fencing token: a decimal integer in [0, 2^63 - 1] (ELECTION_EPOCH is a leader node's czxid)."""
    raw = text.strip()
    if not raw.isascii() or not raw.isdigit():
        raise ConfigError(f"{text!r} is not an epoch (a non-negative integer, such as $ELECTION_EPOCH)")
    if len(raw.lstrip("0")) > 19 or int(raw) > MAX_EPOCH:
        raise ConfigError(f"{text!r} is larger than any epoch (2^63 - 1)")
    return int(raw)


def parse_fence_dir(text: str) -> Path:
    """An existing directory: the fence guards a resource that is already there, so a missing one is
    a mistake (a typo, a volume not mounted), not something to create."""
    path = parse_file_dir(text)
    if not path.is_dir():
        raise ConfigError(f"{str(path)!r} does not exist")
    return path


@dataclass(frozen=True)
class Verdict:
    """The fence's answer for one epoch: ``allowed``, and the highest epoch recorded before (None if
    nothing had been recorded)."""

    allowed: bool
    epoch: int
    highest: int | None

    def refusal(self, directory: Path) -> str:
        """The one line that explains a refusal."""
        return f"epoch {self.epoch} is fenced out of {directory}: epoch {self.highest} has written there"


def claim(fence: FileFence, epoch: int) -> Verdict:
    """Decide for ``epoch`` while the caller holds ``fence``'s lock, and record ``epoch`` as the
    highest when it is newer than the record (the publish counter of our file writer is kept).

    Allowed when ``epoch`` is not older than the record: the same term writes as often as it likes.
    Raises StorageError (CorruptFenceError included: an unreadable record fails closed) if the
    record cannot be read or written.
    """
    state = fence.read()
    if state is not None and state.epoch > epoch:
        return Verdict(False, epoch, state.epoch)
    if state is None or state.epoch < epoch:
        fence.store(FenceState(epoch, None if state is None else state.published))
    return Verdict(True, epoch, None if state is None else state.epoch)


def check(directory: Path, epoch: int, lock_timeout: float) -> Verdict:
    """The check form: claim ``epoch`` under the lock, then release it."""
    with FileFence(directory, lock_timeout=lock_timeout).locked() as fence:
        return claim(fence, epoch)


def run_fenced(
    directory: Path,
    epoch: int,
    command: Sequence[str],
    lock_timeout: float,
    *,
    refused: Callable[[Verdict], None],
) -> int:
    """The command form: claim ``epoch`` under the lock and, if allowed, run ``command`` while it
    is held; the lock is released only after the command has exited.

    Returns the command's exit status (128 + N for signal N), or EXIT_FENCED after calling
    ``refused`` (the command is not started). The command inherits stdin, stdout, stderr and the
    process group, so signals sent to the group (``election run --exec`` stops its child's group)
    reach it directly; this process only waits for it, and so holds the lock until it is gone.
    Raises StorageError if the fence cannot be taken or read, OSError if the command cannot start.
    """
    with FileFence(directory, lock_timeout=lock_timeout).locked() as fence:
        verdict = claim(fence, epoch)
        if not verdict.allowed:
            refused(verdict)
            return EXIT_FENCED
        with _signals_held():
            child = subprocess.Popen(list(command), preexec_fn=_die_with_parent(os.getpid()))  # noqa: PLW1509
            status = child.wait()
    return SIGNAL_EXIT_BASE - status if status < 0 else status


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """While the command runs, the signals that would end this process (and so release the lock
    early) only wake it: it goes on waiting. A no-op handler, not SIG_IGN: exec resets handled
    signals to their default in the command, an ignored one it would inherit."""
    previous = {sig: signal.signal(sig, lambda _signum, _frame: None) for sig in _HELD_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _die_with_parent(parent: int) -> Callable[[], None] | None:
    """A preexec function that makes the kernel SIGKILL the command when we die (Linux only), so a
    killed ``election fence`` does not leave its command writing without the lock."""
    if not sys.platform.startswith("linux"):
        return None

    import ctypes  # noqa: PLC0415 - only the command form needs it

    def preexec() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # we died before the request took effect
            os._exit(SIGNAL_EXIT_BASE + signal.SIGKILL)

    return preexec
