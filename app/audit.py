"""``election audit``: check a ``file-dir`` against what the service guarantees.

Rules (each violation names its rule):

* ``unparsable``: a leader file is not a JSON object with ``identity`` (text), ``epoch`` and
  ``sequence`` (integers) and ``written_at`` (RFC 3339).
* ``name_mismatch``: the epoch or sequence in the file's name differs from its content.
* ``epoch_decreased``: in write order (``written_at``), a file's epoch is lower than an earlier
  file's: a stale leader wrote after a newer one, or two terms interleaved.
* ``sequence_not_increasing``: within one epoch, in write order, sequences do not strictly increase.
* ``leftover``: a temporary file of an interrupted write (removed by the next start) is present.
* ``over_capacity``: more leader files than ``--storage-capacity`` (only when given).
* ``fence_behind``: the fence records a lower epoch than a file's.

Write order comes from ``written_at``, the writers' wall clocks: replicas on different hosts need
synchronised clocks (NTP) for the ordering rules to be meaningful.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from app.adapters.fs_fence import FENCE_NAME, FENCE_TEMP_NAME
from app.adapters.fs_storage import FILE_RE, TEMP_RE


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
class _Entry:
    name: str
    identity: str
    epoch: int
    sequence: int
    written_at: str
    when: datetime


def _parse(directory: Path, name: str, report: AuditReport) -> _Entry | None:
    try:
        with (directory / name).open("rb") as handle:
            content: Any = json.loads(handle.read(1 << 20))
    except (OSError, ValueError) as exc:
        report.violations.append(Violation("unparsable", name, str(exc)))
        return None
    fields = {"identity": str, "epoch": int, "sequence": int, "written_at": str}
    if not isinstance(content, dict) or any(
        not isinstance(content.get(key), kind) or isinstance(content.get(key), bool)
        for key, kind in fields.items()
    ):
        report.violations.append(
            Violation("unparsable", name, f"missing or mistyped fields: {content!r:.120}")
        )
        return None
    try:
        when = datetime.fromisoformat(content["written_at"].replace("Z", "+00:00"))
    except ValueError:
        report.violations.append(Violation("unparsable", name, f"written_at {content['written_at']!r}"))
        return None
    if when.tzinfo is None:
        report.violations.append(Violation("unparsable", name, "written_at has no time zone"))
        return None
    match = FILE_RE.fullmatch(name)
    assert match is not None  # only called for our names
    if (int(match.group(1)), int(match.group(2))) != (content["epoch"], content["sequence"]):
        report.violations.append(
            Violation(
                "name_mismatch", name, f"content says epoch {content['epoch']} seq {content['sequence']}"
            )
        )
    return _Entry(
        name, content["identity"], content["epoch"], content["sequence"], content["written_at"], when
    )


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
            try:
                report.fence = int(json.loads((directory / name).read_text())["epoch"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                report.violations.append(Violation("unparsable", name, f"fence: {exc}"))
        elif not name.startswith(".election-fence"):
            report.foreign += 1

    if capacity is not None and report.files > capacity:
        report.violations.append(
            Violation("over_capacity", None, f"{report.files} leader files, capacity {capacity}")
        )
    _check_order(entries, report)
    if entries and report.fence is not None:
        newest = max(e.epoch for e in entries)
        if report.fence < newest:
            report.violations.append(
                Violation("fence_behind", FENCE_NAME, f"fence {report.fence} < epoch {newest}")
            )
    return report


def _check_order(entries: list[_Entry], report: AuditReport) -> None:
    by_time = sorted(entries, key=lambda e: (e.when, e.epoch, e.sequence))
    highest: _Entry | None = None
    last_in_epoch: dict[int, _Entry] = {}
    for entry in by_time:
        if highest is not None and entry.epoch < highest.epoch:
            report.violations.append(
                Violation(
                    "epoch_decreased",
                    entry.name,
                    f"epoch {entry.epoch} written at {entry.written_at}, after {highest.name} of epoch "
                    f"{highest.epoch} ({highest.written_at})",
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
                    f"sequence {entry.sequence} written after sequence {previous.sequence} of the same epoch",
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
