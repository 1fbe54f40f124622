"""A file-dir that fills up or turns read-only: a tmpfs mounted over it (root), and a filler.

- :class:`Tmpfs` mounts a small tmpfs at a directory (the replicas' ``file-dir``), so that its size
  is ours to fill and its mode ours to flip: :meth:`Tmpfs.remount` ``"ro"`` makes every write fail
  with EROFS, ``"rw"`` undoes it; :meth:`Tmpfs.unmount` undoes the mount (lazily if still busy).
- :class:`Filler` fills the file system with a file that is not the service's and keeps it full
  (ENOSPC for every write, even after retention frees space); :meth:`Filler.stop` deletes the file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

from tools.waiting import poll_until

__all__ = ["Filler", "Tmpfs", "tmpfs_unavailable"]


def tmpfs_unavailable() -> str | None:
    """Why a tmpfs cannot be mounted here, or None."""
    if os.geteuid() != 0:
        return "mounting a tmpfs over file-dir needs root"
    if shutil.which("mount") is None or shutil.which("umount") is None:
        return "mount/umount are not installed"
    probe = Path(f"/tmp/election-chaos-probe-{os.getpid()}")
    probe.mkdir(exist_ok=True)
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            return f"cannot mount a tmpfs: {done.stderr.strip()}"
        subprocess.run(["umount", str(probe)], check=False, capture_output=True)
        return None
    finally:
        with contextlib.suppress(OSError):
            probe.rmdir()


class Tmpfs:
    """A tmpfs mounted at ``path`` (the replicas' file-dir), remountable read-only and back."""

    def __init__(self, path: Path, size: str = "16m") -> None:
        self.path = path
        self.size = size
        self.mounted = False

    def mount(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size},mode=0755", "tmpfs", str(self.path)],
            check=True,
            capture_output=True,
        )
        self.mounted = True

    def remount(self, mode: str, timeout: float = 10.0) -> None:
        """``mode`` is "ro" or "rw". Going read-only fails with EBUSY while a file is open for writing
        (a leader mid-write), so that is retried until ``timeout``."""
        refused: list[str] = []

        def remounted() -> bool:
            done = subprocess.run(
                ["mount", "-o", f"remount,{mode}", str(self.path)],
                capture_output=True,
                text=True,
                check=False,
            )
            refused[:] = [done.stderr.strip()]
            return done.returncode == 0

        if not poll_until(remounted, time.monotonic() + timeout):
            raise RuntimeError(f"cannot remount {self.path} {mode}: {refused[0]}")

    def unmount(self) -> None:
        """Back to read-write, then unmount (lazily if busy); safe to call twice."""
        if not self.mounted:
            return
        with contextlib.suppress(RuntimeError):
            self.remount("rw", timeout=1.0)
        done = subprocess.run(["umount", str(self.path)], capture_output=True, check=False)
        if done.returncode != 0:
            subprocess.run(["umount", "-l", str(self.path)], check=False, capture_output=True)
        self.mounted = False


class Filler:
    """Fills the file system of ``path`` (a file that is not the service's) and keeps it full: every
    20 ms it appends again until ENOSPC, so that space freed by retention is taken at once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.bytes = 0

    def _fill(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            for size in (1 << 20, 1 << 16, 1 << 12, 1 << 8, 1):
                chunk = bytes(size)
                while True:
                    try:
                        self.bytes += os.write(fd, chunk)
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
                        break
        finally:
            os.close(fd)

    def start(self) -> None:
        """Fill the file system now, then keep it full until :meth:`stop`."""
        self._fill()
        self._thread = threading.Thread(target=self._keep_full, name="filler", daemon=True)
        self._thread.start()

    def _keep_full(self) -> None:
        while not self._stop.wait(0.02):
            with contextlib.suppress(OSError):
                self._fill()

    def stop(self) -> None:
        """Stop refilling and delete the file: the space is free again."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
