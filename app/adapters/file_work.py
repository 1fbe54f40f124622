"""The file writer: the default leader work, one file per ``leader-timeout`` (the assignment's work).

Each step writes one record through the storage port and then applies retention, both under the
step's confirmation (``valid_until``): the storage publishes or deletes nothing past it, and nothing
once a newer term has written (the fence). What became of it is logged and counted here:

* written: ``file_written``; the sequence advances. A file published whose directory fsync failed is
  written too (the sequence advances) and is also counted as ``reason="directory_fsync"``.
* refused by the fence: nothing written or deleted, counted (``election_fenced_writes_total``),
  ``Outcome.FENCED`` (the leader resigns).
* past the lease: nothing published, ``reason="lease_expired"``, ``Outcome.RETRY`` (confirm, retry
  at once).
* any other failure: ``reason="storage"``, ``Outcome.FAILED`` (the next slot tries again).
* retention past its lease or failing: counted (``lease_expired`` / ``retention``), not a failed
  write; the next step retries it.

Sequence numbers count within a term; a term resumed with the same epoch (our session survived a
short disconnection) continues its numbering instead of reusing names.
"""

from __future__ import annotations

import logging
from typing import Any

from app.config import Settings
from app.ports.clock import Clock
from app.ports.metrics import Metrics
from app.ports.storage import FencedError, LeaseExpiredError, Record, Storage, StorageError
from app.ports.work import Ended, Outcome, Step

log = logging.getLogger("election.states.leader")  # the leader's own log lines, as before the port


class FileWork:
    """The work port over the storage port."""

    kind = "files"
    shows_progress = True

    def __init__(self, storage: Storage, metrics: Metrics, clock: Clock, settings: Settings) -> None:
        self._storage = storage
        self._metrics = metrics
        self._clock = clock
        self._settings = settings
        self._next: tuple[int, int] | None = None  # (epoch, next sequence) of the last term worked
        self._running = False

    def prepare(self) -> int:
        return self._storage.prepare()

    def period(self, lease: float) -> float:
        return self._settings.leader_timeout

    def begin(self, epoch: int) -> None:
        self._storage.begin_term()  # others wrote while we did not lead
        if self._next is None or self._next[0] != epoch:
            self._next = (epoch, 0)

    def step(self, epoch: int, *, valid_until: float) -> Step:
        sequence = self._next[1] if self._next is not None and self._next[0] == epoch else 0
        done = self._write(epoch, sequence, valid_until)
        if done.outcome is Outcome.DONE:
            self._next = (epoch, sequence + 1)
            if not self._running:
                self._running = True
                self._metrics.work_running(True)
            fenced = self._retain(epoch, valid_until)
            if fenced is not None:
                return fenced
        return done

    def stop(self, reason: str) -> None:
        # A write in progress has completed or vanished (the state calls this between steps).
        if self._running:
            self._running = False
            self._metrics.work_running(False)

    def kill_now(self) -> None:
        pass  # a write in progress is atomic: nothing to kill

    def ended(self) -> Ended | None:
        return None  # files never end by themselves

    def running(self) -> bool:
        return self._running

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "running": self._running, "file_dir": str(self._settings.file_dir)}

    def _write(self, epoch: int, sequence: int, valid_until: float) -> Step:
        record = Record(
            identity=self._settings.identity,
            epoch=epoch,
            sequence=sequence,
            written_at=self._clock.wall().isoformat(timespec="microseconds").replace("+00:00", "Z"),
        )
        try:
            written = self._storage.write(record, valid_until=valid_until)
        except FencedError as exc:
            return self._fenced(epoch, exc)
        except LeaseExpiredError as exc:
            self._failed(
                "lease_expired", f"write not published: {exc}; confirming leadership again", sequence
            )
            return Step(Outcome.RETRY, why=f"leader write not published within its lease: {exc}")
        except StorageError as exc:
            self._failed("storage", f"write failed: {exc}", sequence)
            return Step(Outcome.FAILED, why=f"leader write failed: {exc}")
        self._metrics.file_written()
        log.info(
            "wrote %s",
            written.name,
            extra={
                "event": "file_written",
                "file": written.name,
                "sequence": sequence,
                "order": written.order,
            },
        )
        if not written.synced:
            self._metrics.write_failed("directory_fsync")
            log.error(
                "wrote %s, but the directory fsync after it failed: a crash of the file server may lose it",
                written.name,
                extra={"event": "write_error", "reason": "directory_fsync", "file": written.name},
            )
        return Step(Outcome.DONE, order=written.order)

    def _retain(self, epoch: int, valid_until: float) -> Step | None:
        """Retention under the write's confirmation; a Step only when fenced."""
        try:
            deleted = self._storage.retain(
                self._settings.storage_capacity, epoch=epoch, valid_until=valid_until
            )
        except FencedError as exc:
            return self._fenced(epoch, exc)
        except LeaseExpiredError as exc:
            self._metrics.write_failed("lease_expired")
            log.warning(
                "retention skipped: %s", exc, extra={"event": "write_error", "reason": "lease_expired"}
            )
            return None
        except StorageError as exc:
            self._metrics.write_failed("retention")
            log.error("retention failed: %s", exc, extra={"event": "write_error", "reason": "retention"})
            return None
        if deleted:
            self._metrics.files_deleted(len(deleted))
            log.info(
                "deleted %d old file(s)", len(deleted), extra={"event": "files_deleted", "files": deleted}
            )
        return None

    def _failed(self, reason: str, message: str, sequence: int) -> None:
        self._metrics.write_failed(reason)
        level = logging.WARNING if reason == "lease_expired" else logging.ERROR  # lease: confirm and retry
        log.log(level, "%s", message, extra={"event": "write_error", "reason": reason, "sequence": sequence})

    def _fenced(self, epoch: int, exc: FencedError) -> Step:
        self._metrics.write_fenced()
        log.error(
            "fenced: %s; stepping down without writing or deleting anything more",
            exc,
            extra={"event": "fenced", "epoch": epoch, "newer_epoch": exc.newer},
        )
        return Step(Outcome.FENCED, why=f"fenced: a newer term ({exc.newer}) has written", newer=exc.newer)
