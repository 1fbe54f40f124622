"""The scenarios of issue 5, one module each, and what they share.

Every scenario module has ``NAME``, ``TITLE``, ``run(ctx) -> dict`` (JSON-ready: ``config``,
``summary``, ``rounds``), ``report(result) -> str`` (the printed table) and
``plot(result, directory) -> list[Path]``; ``bench/scenarios/_skeleton.py`` is what their ``run``,
``report`` and ``plot`` are built from (fleets, the order of the rounds, the result, table cells).
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from kazoo.client import KazooClient
from kazoo.exceptions import NodeExistsError

from bench.common import LoadMonitor
from bench.zk import BenchZooKeeper
from tools.ensemble import LocalEnsemble

T = TypeVar("T")


@dataclass
class RunContext:
    workdir: Path
    app_src: Path
    quick: bool
    rounds: int | None
    monitor: LoadMonitor
    seed: int
    # A second version of the app (``--compare-app-ref``) that scenarios which support it
    # (graceful, cadence, cadence-ensemble) run next to the one under test, in the same run.
    compare_app_src: Path | None = None
    # ``--sizes``: the group sizes (N) of the scenarios that sweep N (graceful, scale), if given.
    sizes: list[int] | None = None
    rng: random.Random = field(init=False)
    _servers: list[BenchZooKeeper] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def pick_rounds(self, full: int, quick: int) -> int:
        """The rounds of a scenario: ``--rounds`` if given, else ``quick`` with ``--quick``, else ``full``."""
        if self.rounds is not None:
            return self.rounds
        return self.sized(full, quick)

    def compare_label(self) -> str | None:
        """The compared app's short commit (``--compare-app-ref``), its directory if not exported
        from git, None without one."""
        if self.compare_app_src is None:
            return None
        pinned = self.compare_app_src / ".commit"
        return pinned.read_text().strip()[:7] if pinned.is_file() else str(self.compare_app_src)

    def pick_sizes(self, full: list[int], quick: list[int]) -> list[int]:
        """Sizes of a sweep: ``--sizes`` if given, else ``quick`` with ``--quick``, else ``full``."""
        return list(self.sizes) if self.sizes else list(self.sized(full, quick))

    def sized(self, full: T, quick: T) -> T:
        """``quick`` in a ``--quick`` run, else ``full`` (sizes, windows, timeouts; not rounds)."""
        return quick if self.quick else full

    @contextlib.contextmanager
    def zookeeper(self, name: str, tick_ms: int = 200, request_log: bool = False) -> Iterator[BenchZooKeeper]:
        zk = BenchZooKeeper(self.workdir / name / "zookeeper", tick_ms=tick_ms, request_log=request_log)
        zk.start()
        warm_up(zk.address, self.sized(3.0, 0.5))
        self._servers.append(zk)
        try:
            yield zk
        finally:
            zk.stop()

    @contextlib.contextmanager
    def ensemble(self, name: str, size: int = 3, tick_ms: int = 200) -> Iterator[LocalEnsemble]:
        """A ``size``-member quorum, every member warmed up (through itself) before it is yielded."""
        ens = LocalEnsemble(self.workdir / name / "ensemble", size=size, tick_ms=tick_ms)
        ens.start()
        try:
            for member in ens:
                warm_up(member.address, self.sized(3.0, 0.5) / size)
            yield ens
        finally:
            ens.stop()

    def note_window(self, started: float) -> dict[str, Any]:
        return self.monitor.window(started, time.time())


def warm_up(address: str, seconds: float) -> None:
    """Exercise a fresh server (creates, reads, watches, deletes) so that its JVM has compiled the
    request path before anything is measured: otherwise whichever group runs first pays for it."""
    client = KazooClient(hosts=address, timeout=10.0)
    client.start(timeout=30)
    try:
        client.ensure_path("/warm-up")
        deadline = time.monotonic() + seconds
        i = 0
        while time.monotonic() < deadline:
            path = f"/warm-up/n{i % 50}"
            with contextlib.suppress(NodeExistsError):
                client.create(path, b"x", ephemeral=True)
            client.exists(path, watch=lambda _event: None)
            client.get(path)
            client.get_children("/warm-up")
            client.delete(path)
            i += 1
    finally:
        client.stop()
        client.close()


def all_scenarios() -> dict[str, ModuleType]:
    # Imported on demand: the scenario modules import this one.
    from bench.scenarios import (  # noqa: PLC0415
        cadence,
        cadence_ensemble,
        crash,
        exec_work,
        footprint,
        graceful,
        isolation,
        retention,
        scale,
        switchover,
        trace,
        wakeup,
    )

    modules = (
        graceful,
        crash,
        isolation,
        scale,
        footprint,
        cadence,
        cadence_ensemble,
        retention,
        exec_work,
        switchover,
        trace,
        wakeup,
    )
    return {m.NAME: m for m in modules}


# ``all`` runs the scenarios of issue 5; the others (``trace``, a profiler; ``wakeup``, a
# micro-benchmark of the machine) run only by name.
IN_ALL = (
    "graceful",
    "crash",
    "isolation",
    "scale",
    "footprint",
    "cadence",
    "cadence-ensemble",
    "retention",
    "exec",
    "switchover",
)
