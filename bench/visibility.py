"""When a leader file becomes *visible* in a directory, as a reader there would see it, without polling.

A :class:`DirectoryWatch` is one thread blocked on a Linux inotify descriptor (the ``inotify_simple``
package, the ``bench`` extra) watching one group's file directory for ``IN_CREATE`` (a hard link to
the final name: the app's and the baselines' publish, ``bench/baselines/_leaderfile.py``) and
``IN_MOVED_TO`` (a rename to it). For every name that parses as a leader file
(``app.adapters.fs_storage.parse_file_name``; the temporary ``.leader-...tmp`` names do not) it
records ``time.time()`` as the thread reads the event: the moment the file was complete under its
name (its content was fsynced before the link) plus the thread's wake-up. The directory fsync that
follows the link is not waited for: a reader on the same machine sees the file from the link on.

:meth:`DirectoryWatch.wait_first_after` is what a hand-over round waits on instead of polling the
directory: it sleeps on a condition until a file of a higher epoch has been seen (the poll it
replaces, ``Group.wait_next_leader`` every 2 ms, loaded a CPU during the very hand-over it timed).

Where inotify cannot be had (not Linux, the package missing, the descriptor limit reached),
:func:`watch` raises :class:`WatchUnavailableError` with the reason; the scenarios then fall back to that
poll and say so in their report.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.adapters.fs_storage import parse_file_name


class WatchUnavailableError(RuntimeError):
    """inotify cannot watch the directory here (the message says why)."""


@dataclass(frozen=True)
class Seen:
    """One leader file as the watch saw it appear."""

    name: str
    epoch: int
    sequence: int
    at: float  # time.time() when the watch thread read the event


def _inotify() -> Any:
    try:
        import inotify_simple  # noqa: PLC0415 - optional (the bench extra), Linux only
    except ImportError as exc:
        raise WatchUnavailableError(
            f"inotify_simple is not installed ({exc}); pip install -e '.[bench]'"
        ) from None
    return inotify_simple


class DirectoryWatch:
    """One directory's leader files, timed as they appear (see the module's docstring)."""

    def __init__(self, directory: Path) -> None:
        inotify_simple = _inotify()
        self.directory = directory
        try:
            self._inotify = inotify_simple.INotify()
            mask = inotify_simple.flags.CREATE | inotify_simple.flags.MOVED_TO
            self._inotify.add_watch(str(directory), mask)
        except OSError as exc:
            raise WatchUnavailableError(f"inotify cannot watch {directory}: {exc.strerror or exc}") from exc
        self._wake_r, self._wake_w = os.pipe()
        self._seen: list[Seen] = []
        self._changed = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"watch {directory.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._inotify.fileno(), select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        while True:
            ready = {fd for fd, _mask in poller.poll()}  # blocks: no timeout, no polling
            if self._wake_r in ready:
                return
            events = self._inotify.read(timeout=0)
            at = time.time()
            found = []
            for event in events:
                numbers = parse_file_name(event.name)
                if numbers is not None:
                    found.append(Seen(event.name, numbers[0], numbers[1], at))
            if found:
                with self._changed:
                    self._seen.extend(found)
                    self._changed.notify_all()

    def seen(self) -> list[Seen]:
        """Every leader file seen so far, in the order seen."""
        with self._changed:
            return list(self._seen)

    def first_after(self, epoch: int) -> Seen | None:
        """The first file seen of an epoch higher than ``epoch`` (None if none yet)."""
        with self._changed:
            return _first_after(self._seen, epoch)

    def wait_first_after(self, epoch: int, timeout: float) -> Seen:
        """Block until a file of an epoch higher than ``epoch`` has been seen; ``TimeoutError`` after
        ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while (found := _first_after(self._seen, epoch)) is None:
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    raise TimeoutError(f"no leader file of an epoch above {epoch} in {self.directory}")
                self._changed.wait(left)
            return found

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        self._thread.join(timeout=5.0)
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(OSError):
            self._inotify.close()


def _first_after(seen: list[Seen], epoch: int) -> Seen | None:
    for item in seen:  # in the order seen: the first one is the earliest
        if item.epoch > epoch:
            return item
    return None


def watch(directory: Path) -> DirectoryWatch:
    """A started :class:`DirectoryWatch` on ``directory``; :class:`WatchUnavailableError` if inotify
    cannot be had here."""
    if not hasattr(select, "poll") or not os.path.isdir("/proc/sys/fs/inotify"):
        raise WatchUnavailableError("inotify is Linux's: not available on this system")
    return DirectoryWatch(directory)
