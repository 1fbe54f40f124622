"""A process held inside one system call: a leader stalled in the middle of publishing a file.

:class:`SyscallStall` attaches strace to the process's main thread and delays the entry of its next
``linkat`` (the step that publishes a leader file, after every check) or ``fsync`` by a given time,
with strace's syscall delay injection. Only the main thread is traced, so kazoo's thread keeps the
session alive meanwhile: the process is alive, connected and stuck. Undone by :meth:`SyscallStall.stop`
(strace detaches; a delay under way ends) or by the delay running out.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
from pathlib import Path

__all__ = ["SyscallStall", "strace_unavailable"]

_SYSCALLS = {"x86_64": {"linkat": 265, "fsync": 74}, "aarch64": {"linkat": 37, "fsync": 82}}


def strace_unavailable() -> str | None:
    """Why a process cannot be stalled in a syscall here, or None."""
    if shutil.which("strace") is None:
        return "strace is not installed (apt-get install strace): it stalls a leader inside its write"
    if platform.machine() not in _SYSCALLS:
        return f"the syscall numbers of {platform.machine()} are not known here"
    return None


class SyscallStall:
    """Holds a process's main thread at the entry of its next ``syscall`` (``linkat``: the step that
    publishes a leader file, after every check; ``fsync``) for ``seconds`` or until :meth:`stop`,
    with strace's syscall delay injection. Only the main thread is traced: kazoo's thread keeps the
    session alive meanwhile."""

    def __init__(self, pid: int, seconds: float, log_path: Path, syscall: str = "linkat") -> None:
        self.pid = pid
        self.log_path = log_path
        self._nr = _SYSCALLS[platform.machine()][syscall]
        self._proc = subprocess.Popen(
            [
                "strace",
                "-qq",
                "-p",
                str(pid),
                "-e",
                f"trace={syscall}",
                "-e",
                f"inject={syscall}:delay_enter={int(seconds * 1e6)}:when=1",
                "-o",
                str(log_path),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def syscall(self) -> int | None:
        """The syscall the main thread is blocked in (None while it runs)."""
        try:
            first = Path(f"/proc/{self.pid}/syscall").read_text().split()[0]
        except (OSError, IndexError):
            return None
        return int(first) if first.lstrip("-").isdigit() else None

    def stalled(self) -> bool:
        """True while the main thread sits in the stalled syscall."""
        return self.syscall() == self._nr

    def stop(self) -> None:
        """Detach strace (ending a delay under way); safe to call twice."""
        if self._proc.poll() is None:
            self._proc.terminate()  # strace detaches on SIGTERM
            try:
                self._proc.wait(5.0)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
