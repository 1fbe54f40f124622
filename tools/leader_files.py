"""Reading the leader files in a ``file-dir``: the one reader of the tests, the chaos suite and the bench.

The format is the app's (``app.adapters.fs_storage``: :func:`~app.adapters.fs_storage.parse_file_name`
and :func:`~app.adapters.fs_storage.parse_file_content`, which ``election audit`` uses too), so a
change to it reaches every reader here at once. On top of the app's parse this module guarantees:

- a file is read in one go and its visibility time taken from the inode (``st_ctime_ns``: set when
  the temporary file is linked to its final name, i.e. when the file was *published*);
- a file that vanished between listing and reading (retention) is not an error: readers return
  ``None`` or skip it; a file that does not parse, or whose content disagrees with its name, raises
  ``ValueError`` naming the file (:func:`observe` collects those as problems instead);
- listings are sorted by name, which is the write order of a well-behaved service (epoch, then
  sequence), and a missing directory lists as empty.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from app.adapters.fs_storage import FILE_RE, parse_file_content, parse_file_name

#: The pattern of a leader file's name (``leader-<epoch:020d>-<sequence:012d>.json``), the app's own.
LEADER_FILE = FILE_RE


def parse_time(text: str) -> float:
    """An RFC 3339 timestamp (``...Z`` or ``+00:00``, as in leader files and log lines) as seconds
    since the epoch."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True)
class LeaderFile:
    """One leader file: its term, its writer, and when it was written and published."""

    name: str
    epoch: int
    sequence: int
    identity: str
    written_at: float  # seconds since the epoch, from the file (the writer's clock)
    published_ns: int  # st_ctime_ns of the final name (the kernel's clock)
    order: int | None = None  # the publish counter the fence gave the file (None: not recorded)

    @property
    def published(self) -> float:
        """When the file became visible under its name, in seconds since the epoch."""
        return self.published_ns / 1e9


def read(path: Path) -> LeaderFile | None:
    """The leader file at ``path``; None if it is gone (retention).

    Raises ``ValueError`` if the name is not a leader file's, the content does not parse, or the
    content's epoch and sequence differ from the name's.
    """
    numbers = parse_file_name(path.name)
    if numbers is None:
        raise ValueError(f"{path.name} is not a leader file name")
    try:
        published_ns = os.stat(path, follow_symlinks=False).st_ctime_ns
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        content = parse_file_content(raw)
    except ValueError as exc:
        raise ValueError(f"{path.name} does not parse: {exc}") from exc
    if (content.epoch, content.sequence) != numbers:
        raise ValueError(f"{path.name} says epoch {content.epoch} sequence {content.sequence}")
    return LeaderFile(
        name=path.name,
        epoch=content.epoch,
        sequence=content.sequence,
        identity=content.identity,
        written_at=content.when.timestamp(),
        published_ns=published_ns,
        order=content.order,
    )


def epoch_of(name: str) -> int:
    """The epoch in a leader file's name; ``ValueError`` for any other name."""
    numbers = parse_file_name(name)
    if numbers is None:
        raise ValueError(f"{name} is not a leader file name")
    return numbers[0]


def names(directory: Path) -> list[str]:
    """Names of the leader files in ``directory``, sorted; empty if the directory does not exist."""
    try:
        return sorted(n for n in os.listdir(directory) if FILE_RE.fullmatch(n))
    except FileNotFoundError:
        return []


def files(directory: Path) -> list[LeaderFile]:
    """The leader files now in ``directory`` in name order (vanished ones skipped; ``ValueError`` on
    a file that does not parse)."""
    found = (read(directory / name) for name in names(directory))
    return [record for record in found if record is not None]


def observe(directory: Path) -> tuple[list[LeaderFile], list[str]]:
    """Every leader file now in ``directory`` (name order) and the problems found reading them."""
    found: list[LeaderFile] = []
    problems: list[str] = []
    for name in names(directory):
        try:
            record = read(directory / name)
        except ValueError as exc:
            problems.append(str(exc))
            continue
        if record is not None:
            found.append(record)
    return found, problems


def newest(directory: Path) -> LeaderFile | None:
    """The file with the highest name (the current term's latest); None if there is none yet or it
    vanished meanwhile. Lists with ``scandir`` and reads one file: cheap enough for a tight poll."""
    best = ""
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.name > best and FILE_RE.fullmatch(entry.name):
                best = entry.name
    return read(directory / best) if best else None


def first_of_term_after(directory: Path, epoch: int) -> LeaderFile | None:
    """The first file (lowest name) of a term newer than ``epoch``, if one exists yet.

    One ``scandir`` and no sort (the bench polls this every few milliseconds while a hand-over
    runs, with up to 100k files present); a candidate that vanished is passed over.
    """
    gone: set[str] = set()
    while True:
        best: tuple[int, int, str] | None = None
        with os.scandir(directory) as entries:
            for entry in entries:
                numbers = parse_file_name(entry.name)
                if numbers is not None and numbers[0] > epoch and entry.name not in gone:
                    key = (*numbers, entry.name)
                    if best is None or key < best:
                        best = key
        if best is None:
            return None
        record = read(directory / best[2])
        if record is not None:
            return record
        gone.add(best[2])


def of_term(directory: Path, epoch: int) -> list[LeaderFile]:
    """The files of term ``epoch`` now in ``directory``, by sequence (vanished ones skipped)."""
    prefix = f"leader-{epoch:020d}-"
    found = (read(directory / name) for name in names(directory) if name.startswith(prefix))
    return [record for record in found if record is not None]
