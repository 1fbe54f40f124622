"""``election audit``: check a ``file-dir`` against what the service guarantees.

Rules (each violation names its rule):

* ``unparsable``: a leader file is not a JSON object with ``identity`` (text), ``epoch`` and
  ``sequence`` (integers), ``written_at`` (RFC 3339) and, if present, ``order`` (a positive integer).
* ``name_mismatch``: the epoch or sequence in the file's name differs from its content.
* ``epoch_decreased``: in publish order, a file's epoch is lower than an earlier file's: a stale
  leader published after a newer one, or two terms interleaved.
* ``sequence_not_increasing``: within one epoch, in publish order, sequences do not strictly increase.
* ``order_repeated``: two files carry the same publish counter (the fence lock did not exclude:
  an NFS mount with ``nolock``, say).
* ``leftover``: a temporary file of an interrupted write (removed by the next start) is present.
* ``over_capacity``: more leader files than ``--storage-capacity`` (only when given).
* ``fence_behind``: the fence records a lower epoch than a file's, or a lower publish counter.

Publish order is the ``order`` each file carries: the directory's publish counter, advanced under
the fence lock with every publish (``app.adapters.fs_storage``). It is the order in which the files
became visible, whatever the writers' clocks say; ``written_at`` is only shown. Files written before
the counter existed have no ``order``: they are counted in ``legacy_files`` (a note, not a
violation), taken to precede every file that has one (they were published before the upgrade), and
ordered among themselves by ``written_at``, which needs synchronised clocks (NTP) to mean anything.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from app.adapters.fs_fence import FENCE_NAME, FENCE_TEMP_NAME, parse_record
from app.adapters.fs_storage import FILE_RE, TEMP_RE, FileContent, parse_file_content, parse_file_name


@dataclass(frozen=True)
class Violation:
    rule: str
    file: str | None
    detail: str


@dataclass(frozen=True)
class Term:
    epoch: int
    identity: str
    files: int
    first_sequence: int
    last_sequence: int
    first_written_at: str
    last_written_at: str


@dataclass
class AuditReport:
    directory: str
    files: int = 0
    foreign: int = 0
    fence: int | None = None
    fence_published: int | None = None
    legacy_files: int = 0  # files without ``order`` (written before the publish counter existed)
    terms: list[Term] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "ok": self.ok}, sort_keys=True)

    def to_text(self) -> str:
        lines = [
            f"file-dir {self.directory}: {self.files} leader file(s) in {len(self.terms)} term(s), "
            f"{self.foreign} other file(s) ignored, fence {self.fence if self.fence is not None else 'none'}"
        ]
        if self.legacy_files:
            lines.append(
                f"  note: {self.legacy_files} file(s) without a publish counter (written before it existed): "
                "taken to precede the others and ordered among themselves by written_at (needs NTP)"
            )
        for term in self.terms:
            lines.append(
                f"  epoch {term.epoch}  {term.identity or '?'}  {term.files} file(s), sequence "
                f"{term.first_sequence}..{term.last_sequence}, "
                f"{term.first_written_at} .. {term.last_written_at}"
            )
        if self.ok:
            lines.append("OK: no violations")
        else:
            lines.append(f"FAILED: {len(self.violations)} violation(s)")
            lines += [f"  {v.rule}: {v.file or '-'}: {v.detail}" for v in self.violations]
        return "\n".join(lines)


@dataclass(frozen=True)
class _Entry(FileContent):
    """A leader file's content (the app's one reading of the format) and the name it was found under."""

    name: str


def _parse(directory: Path, name: str, report: AuditReport) -> _Entry | None:
    try:
        with (directory / name).open("rb") as handle:
            content = parse_file_content(handle.read(1 << 20))
    except (OSError, ValueError) as exc:
        report.violations.append(Violation("unparsable", name, str(exc)))
        return None
    numbers = parse_file_name(name)
    assert numbers is not None  # only called for our names
    if numbers != (content.epoch, content.sequence):
        report.violations.append(
            Violation("name_mismatch", name, f"content says epoch {content.epoch} seq {content.sequence}")
        )
    return _Entry(**asdict(content), name=name)


def audit_directory(directory: Path, capacity: int | None = None) -> AuditReport:
    """Read every file of ``directory`` once and report what breaks the guarantees.

    Raises ``OSError`` if the directory cannot be listed (the CLI turns that into a usage error).
    """
    report = AuditReport(str(directory))
    entries: list[_Entry] = []
    with os.scandir(directory) as listing:
        found = sorted((entry.name, entry.is_file(follow_symlinks=False)) for entry in listing)
    for name, is_file in found:
        if FILE_RE.fullmatch(name) and is_file:
            parsed = _parse(directory, name, report)
            report.files += 1
            if parsed is not None:
                entries.append(parsed)
        elif TEMP_RE.fullmatch(name) or name == FENCE_TEMP_NAME:
            report.violations.append(Violation("leftover", name, "temporary file of an interrupted write"))
        elif name == FENCE_NAME:
            _read_fence(directory / name, report)
        elif not name.startswith(".election-fence"):
            report.foreign += 1

    if capacity is not None and report.files > capacity:
        report.violations.append(
            Violation("over_capacity", None, f"{report.files} leader files, capacity {capacity}")
        )
    _check_order(entries, report)
    _check_fence(entries, report)
    return report


def _publish_order(entry: _Entry) -> tuple[int, int, datetime, int, int]:
    """Files with ``order`` by it; before them the legacy ones, by ``written_at``."""
    if entry.order is None:
        return (0, 0, entry.when, entry.epoch, entry.sequence)
    return (1, entry.order, entry.when, entry.epoch, entry.sequence)


def _check_order(entries: list[_Entry], report: AuditReport) -> None:
    by_time = sorted(entries, key=_publish_order)
    report.legacy_files = sum(1 for e in entries if e.order is None)
    highest: _Entry | None = None
    last_in_epoch: dict[int, _Entry] = {}
    previous_entry: _Entry | None = None
    for entry in by_time:
        if previous_entry is not None and entry.order is not None and entry.order == previous_entry.order:
            report.violations.append(
                Violation("order_repeated", entry.name, f"order {entry.order} also in {previous_entry.name}")
            )
        previous_entry = entry
        if highest is not None and entry.epoch < highest.epoch:
            report.violations.append(
                Violation(
                    "epoch_decreased",
                    entry.name,
                    f"epoch {entry.epoch} published ({_where(entry)}) after {highest.name} of epoch "
                    f"{highest.epoch} ({_where(highest)})",
                )
            )
        elif highest is None or entry.epoch > highest.epoch:
            highest = entry
        previous = last_in_epoch.get(entry.epoch)
        if previous is not None and entry.sequence <= previous.sequence:
            report.violations.append(
                Violation(
                    "sequence_not_increasing",
                    entry.name,
                    f"sequence {entry.sequence} published after {previous.sequence} of the same epoch",
                )
            )
        last_in_epoch[entry.epoch] = entry
    terms: dict[int, list[_Entry]] = {}
    for entry in by_time:
        terms.setdefault(entry.epoch, []).append(entry)
    report.terms = [
        Term(
            epoch=epoch,
            identity=group[0].identity,
            files=len(group),
            first_sequence=group[0].sequence,
            last_sequence=group[-1].sequence,
            first_written_at=group[0].written_at,
            last_written_at=group[-1].written_at,
        )
        for epoch, group in sorted(terms.items())
    ]


def _where(entry: _Entry) -> str:
    place = f"order {entry.order}" if entry.order is not None else "no order"
    return f"{place}, written_at {entry.written_at}"


def _read_fence(path: Path, report: AuditReport) -> None:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        report.violations.append(Violation("unparsable", path.name, f"fence: {exc}"))
        return
    state = parse_record(raw)
    if state is None:
        report.violations.append(Violation("unparsable", path.name, f"fence: {raw[:80]!r}"))
    else:
        report.fence, report.fence_published = state.epoch, state.published


def _check_fence(entries: list[_Entry], report: AuditReport) -> None:
    if not entries or report.fence is None:
        return
    newest = max(e.epoch for e in entries)
    if report.fence < newest:
        report.violations.append(
            Violation("fence_behind", FENCE_NAME, f"fence {report.fence} < epoch {newest}")
        )
    last = max((e.order for e in entries if e.order is not None), default=None)
    if last is not None and (report.fence_published or 0) < last:
        report.violations.append(
            Violation("fence_behind", FENCE_NAME, f"fence published {report.fence_published} < order {last}")
        )
