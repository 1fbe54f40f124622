"""A foreign process holding a POSIX lock: an operator's script or a stuck backup job on the fence.

:class:`ForeignLockHolder` starts a small Python process (not a replica) that takes ``lockf(LOCK_EX)``
on a file (``file-dir/.election-fence.lock``) and holds it; a writer that needs the lock waits or
fails meanwhile. Undone by :meth:`ForeignLockHolder.release`, which kills the process: the kernel
drops the lock with it, as it would for a crashed holder.
"""

from __future__ import annotations

import contextlib
import select
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["ForeignLockHolder"]

_HOLD_LOCK = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o640)
fcntl.lockf(fd, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()  # hold until our stdin is closed (or we are killed)
"""


class ForeignLockHolder:
    """A process that is not a replica holding the POSIX lock on ``path`` until :meth:`release`.

    Returns from construction only once the lock is held (raises, having released it, if not within
    ``timeout``); :attr:`locked_at` is the wall time it was."""

    def __init__(self, path: Path, timeout: float = 10.0) -> None:
        self.path = path
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _HOLD_LOCK, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert self._proc.stdout is not None
            # poll, not select: a long soak's process may hold descriptors above FD_SETSIZE.
            poller = select.poll()
            poller.register(self._proc.stdout, select.POLLIN)
            ready = poller.poll(timeout * 1000)
            line = self._proc.stdout.readline() if ready else b""
            if line.strip() != b"locked":
                raise RuntimeError(f"the foreign lock holder did not lock {path} within {timeout:g}s")
        except BaseException:
            self.release()  # never leave the lock held behind a failed start: the cluster would end
            raise
        self.locked_at = time.time()

    @property
    def holding(self) -> bool:
        return self._proc.poll() is None

    def release(self) -> None:
        """Kill the holder (the kernel drops its lock) and close its pipes; safe to call twice."""
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        for stream in (self._proc.stdin, self._proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
