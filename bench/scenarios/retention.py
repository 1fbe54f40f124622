"""Scenario 7, retention at scale: the cost of one leader tick with 10,000 and 100,000 files kept.

In-process, on the app's own storage adapter (``app.adapters.fs_storage.DirectoryStorage``): the
directory is pre-filled with ``capacity`` leader files (and a few foreign files); a term begins
(``begin_term()``, then the first tick: the adapter indexes the directory once, in one or the other;
timed together as the "first tick", with the index's memory from tracemalloc); then each tick is
``write(record)`` + ``retain(capacity)``, exactly what the Leader state does; both parts are
timed. The baseline does the same write, then rescans the directory each tick (scandir, match,
sort, delete the oldest): what a retention without an index costs. A capacity of 10 is run too,
as the small-directory reference. The write (temp file, fsync, link, directory fsync) is the same
in both and dominates on a slow disk, so ``retain`` is also reported alone.
"""

from __future__ import annotations

import math
import os
import re
import time
import tracemalloc
from pathlib import Path
from typing import Any

from bench.common import ms, num, summary, table
from bench.scenarios import RunContext
from bench.scenarios._skeleton import make_result

NAME = "retention"
TITLE = "7. Retention at scale: cost per tick (write + retain) with a full directory"
FILE_RE = re.compile(r"leader-(\d{20})-(\d{12})\.json")


def _prefill(directory: Path, count: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    body = (
        b'{"epoch": 1, "identity": "prefill", "sequence": 0, "written_at": "2026-01-01T00:00:00.000000Z"}\n'
    )
    for seq in range(count):
        fd = os.open(
            directory / f"leader-{1:020d}-{seq:012d}.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644
        )
        os.write(fd, body)
        os.close(fd)
    for name in ("README.txt", "leader-notours.json", ".hidden"):
        (directory / name).write_text("not ours\n")


def _rescan_retain(directory: Path, capacity: int) -> list[str]:
    names = sorted(
        e.name
        for e in os.scandir(directory)
        if FILE_RE.fullmatch(e.name) and e.is_file(follow_symlinks=False)
    )
    doomed = names[: max(0, len(names) - capacity)]
    for name in doomed:
        os.unlink(directory / name)
    return doomed


def _measure(ctx: RunContext, capacity: int, ticks: int, kind: str) -> dict[str, Any]:
    # The app is imported here, after the command line put the measured one first on sys.path.
    from app.adapters.fs_storage import DirectoryStorage  # noqa: PLC0415
    from app.ports.storage import Record  # noqa: PLC0415

    directory = ctx.workdir / NAME / f"{kind}-{capacity}"
    _prefill(directory, capacity)
    storage = DirectoryStorage(directory)
    storage.prepare()
    tracemalloc.start()
    write_s, retain_s, tick_s = [], [], []
    first_tick = 0.0
    index_bytes = 0
    for seq in range(ticks + 1):
        record = Record("bench", 2, seq, "2026-01-01T00:00:00.000000Z")
        t0 = time.perf_counter()
        if seq == 0:
            # A term starts: the app indexes the directory here (begin_term) or at its first write.
            storage.begin_term()
        storage.write(record, valid_until=math.inf)  # no lease to keep here: storage cost only
        t1 = time.perf_counter()
        if kind == "app":
            deleted = storage.retain(capacity, epoch=2, valid_until=math.inf)
        else:
            deleted = _rescan_retain(directory, capacity)
        t2 = time.perf_counter()
        assert len(deleted) == 1, f"{kind}: deleted {len(deleted)} at tick {seq}"
        if seq == 0:
            first_tick = t2 - t0
            index_bytes = tracemalloc.get_traced_memory()[0]
            tracemalloc.stop()
            continue
        write_s.append(t1 - t0)
        retain_s.append(t2 - t1)
        tick_s.append(t2 - t0)
    left = sum(1 for e in os.scandir(directory) if FILE_RE.fullmatch(e.name))
    foreign = sum(1 for n in ("README.txt", "leader-notours.json", ".hidden") if (directory / n).exists())
    return {
        "capacity": capacity,
        "ticks": ticks,
        "first_tick_s": first_tick,
        "index_bytes": index_bytes if kind == "app" else None,
        "write_s": summary(write_s),
        "retain_s": summary(retain_s),
        "tick_s": summary(tick_s),
        "files_left": left,
        "foreign_files_kept": foreign,
    }


def run(ctx: RunContext) -> dict[str, Any]:
    sizes = ctx.sized([10, 10_000, 100_000], [10, 1_000, 10_000])
    ticks = ctx.pick_rounds(full=500, quick=20)
    started = time.time()
    rows = []
    for capacity in sizes:
        for kind in ("app", "rescan"):
            rows.append({"kind": kind, **_measure(ctx, capacity, ticks, kind)})
    app = {r["capacity"]: r for r in rows if r["kind"] == "app"}
    small, big = app[sizes[0]], app[sizes[-1]]
    return make_result(
        ctx,
        started,
        config={"capacities": sizes, "ticks": ticks, "filesystem": _fs_type(ctx.workdir)},
        summary={
            "rows": rows,
            "app_retain_p50_ratio_largest_to_10": big["retain_s"]["p50"] / small["retain_s"]["p50"],
            "app_tick_p50_ratio_largest_to_10": big["tick_s"]["p50"] / small["tick_s"]["p50"],
            "target_independent_of_size": big["retain_s"]["p50"] < 10 * small["retain_s"]["p50"] + 50e-6,
        },
        rounds=[],
    )


def _fs_type(path: Path) -> str:
    best = ("", "?")
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            _dev, mount, fstype, *_ = line.split()
            if str(path.resolve()).startswith(mount) and len(mount) > len(best[0]):
                best = (mount, fstype)
    except OSError:
        pass
    return f"{best[1]} ({best[0]})"


def report(result: dict[str, Any]) -> str:
    s = result["summary"]
    rows = []
    for r in s["rows"]:
        rows.append(
            [
                f"{'election index' if r['kind'] == 'app' else 'rescan per tick'} @ {r['capacity']:,}",
                ms(r["tick_s"]["p50"], 2),
                ms(r["tick_s"]["p95"], 2),
                ms(r["write_s"]["p50"], 2),
                num(r["retain_s"]["p50"] * 1e6, 1),
                num(r["retain_s"]["p95"] * 1e6, 1),
                ms(r["first_tick_s"], 1),
                num(r["index_bytes"] / 2**20, 2) if r["index_bytes"] is not None else "-",
                f"{r['files_left']:,}",
            ]
        )
    text = table(
        f"{TITLE}; {result['config']['ticks']} ticks each, on {result['config']['filesystem']}",
        [
            "storage",
            "tick p50 ms",
            "tick p95 ms",
            "write p50 ms",
            "retain p50 us",
            "retain p95 us",
            "first tick ms",
            "index MiB",
            "files left",
        ],
        rows,
    )
    return text + (
        f"\nelection retain p50 at the largest size / at 10: {s['app_retain_p50_ratio_largest_to_10']:.2f}x; "
        f"target (independent of size after the first scan): "
        f"{'met' if s['target_independent_of_size'] else 'MISSED'}"
    )


def plot(result: dict[str, Any], directory: Path) -> list[Path]:
    from bench import plots  # noqa: PLC0415 - matplotlib is optional

    rows = result["summary"]["rows"]
    caps = sorted({r["capacity"] for r in rows})
    labels = {"app": "election index", "rescan": "rescan"}

    def series(kind: str, key: str, quantile: str, scale: float) -> tuple[list[int], list[float]]:
        return caps, [r[key][quantile] * scale for r in rows if r["kind"] == kind]

    retain = {f"{labels[k]} {q}": series(k, "retain_s", q, 1e6) for k in labels for q in ("p50", "p95")}
    tick = {labels[k]: series(k, "tick_s", "p50", 1000) for k in labels}
    return [
        plots.by_n(
            directory / "retention.png",
            [
                ("retain() per tick, us", "retention alone (p50 solid, p95 dashed)", retain, True),
                ("whole tick (write + retain), ms", "whole tick (p50)", tick, True),
            ],
            title="Retention: cost per tick against files kept (capacity)",
            xlabel="files kept (storage-capacity)",
        )
    ]
