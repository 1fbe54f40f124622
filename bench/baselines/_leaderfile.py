"""The leader-file format the app writes, for the baseline contenders (standard library only).

A baseline writes one ``leader-<epoch:020d>-<sequence:012d>.json`` when its leader function starts,
with ``written_at`` taken first thing, so that the benchmark reads every implementation's
hand-over the same way: ``written_at`` of the new leader's first file minus the time the old leader
was signalled.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path


def stamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def write_leader_file(directory: Path, epoch: int, sequence: int, identity: str, written_at: float) -> None:
    name = f"leader-{epoch:020d}-{sequence:012d}.json"
    record = {"epoch": epoch, "identity": identity, "sequence": sequence, "written_at": stamp(written_at)}
    temp = directory / f".{name}.tmp"
    temp.write_text(json.dumps(record, sort_keys=True) + "\n")
    os.replace(temp, directory / name)
