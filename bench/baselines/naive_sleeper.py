"""Cadence baseline: a leader loop that writes, then sleeps one period (no grid).

    PYTHONPATH=<repo> python bench/baselines/naive_sleeper.py --file-dir DIR --period 0.01 --ticks 1000

It writes with the app's own ``DirectoryStorage`` (the same atomic write: temp file, fsync, link,
directory fsync) and retention, so the only difference from the app's Leader state is the timing
rule: ``sleep(period)`` after each write lets the write's own duration and the sleep's overshoot
add up tick after tick (drift), where the app keeps a fixed grid. No ZooKeeper read per tick.
"""

from __future__ import annotations

import argparse
import math
import time
from datetime import UTC, datetime
from pathlib import Path

from app.adapters.fs_storage import DirectoryStorage
from app.ports.storage import Record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file-dir", type=Path, required=True)
    parser.add_argument("--period", type=float, required=True)
    parser.add_argument("--ticks", type=int, required=True)
    parser.add_argument("--capacity", type=int, default=100_000)
    parser.add_argument("--epoch", type=int, default=1)
    args = parser.parse_args()

    storage = DirectoryStorage(args.file_dir)
    storage.prepare()
    storage.begin_term()
    for sequence in range(args.ticks):
        written_at = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        # no lease: this baseline is the leader that never checks it
        storage.write(Record("naive-sleeper", args.epoch, sequence, written_at), valid_until=math.inf)
        storage.retain(args.capacity, epoch=args.epoch, valid_until=math.inf)
        time.sleep(args.period)


if __name__ == "__main__":
    main()
