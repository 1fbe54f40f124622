"""“A ZooKeeper”, single or a quorum, behind one interface: what the chaos suite breaks.

A :class:`ZkTarget` is either one standalone :class:`~tools.zookeeper.LocalZooKeeper` or a 3-member
:class:`~tools.ensemble.LocalEnsemble`; code that breaks servers (freeze, stop, restart) iterates
:attr:`ZkTarget.servers` and need not know which. Guarantees: :meth:`ZkTarget.heal` undoes every
server fault (thaws, starts what was stopped) and returns once every server serves again; the
connect string never changes for the target's life.
"""

from __future__ import annotations

import time
from pathlib import Path

from tools.ensemble import LocalEnsemble
from tools.zookeeper import LocalZooKeeper, Served

__all__ = ["TICK_MS", "ZK_KINDS", "ZkTarget"]

ZK_KINDS = ("standalone", "ensemble")
TICK_MS = 200  # ZooKeeper tickTime: session timeouts of 0.4-4 s are granted


class ZkTarget(Served):
    """A standalone server or a 3-node ensemble on 127.0.0.1, with the faults the suite needs."""

    def __init__(self, kind: str, workdir: Path, tick_ms: int = TICK_MS) -> None:
        if kind not in ZK_KINDS:
            raise ValueError(f"unknown ZooKeeper kind {kind!r}")
        self.kind = kind
        self.tick_ms = tick_ms
        self._ensemble: LocalEnsemble | None = None
        if kind == "standalone":
            self.servers: list[LocalZooKeeper] = [LocalZooKeeper(workdir / "zk", tick_ms=tick_ms)]
        else:
            self._ensemble = LocalEnsemble(workdir / "ensemble", size=3, tick_ms=tick_ms)
            self.servers = list(self._ensemble.members)

    @property
    def connect_string(self) -> str:
        return ",".join(server.address for server in self.servers)

    def start(self, timeout: float = 60.0) -> None:
        if self._ensemble is not None:
            self._ensemble.start(timeout)
        else:
            self.servers[0].start(timeout)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def heal(self, timeout: float = 60.0) -> None:
        """Thaw frozen servers, start stopped ones, and wait until every one serves."""
        for server in self.servers:
            if server.frozen:
                server.thaw()
        for server in self.servers:
            if not server.running:
                server.launch()
        deadline = time.monotonic() + timeout
        for server in self.servers:
            server.wait_until_serving(max(1.0, deadline - time.monotonic()))

    def restart(self, timeout: float = 60.0) -> None:
        """Kill every server, then start them all again (same ports, same data)."""
        self.stop()
        self.heal(timeout)

    def sessions(self, server: LocalZooKeeper) -> set[int]:
        """Session ids of the clients connected to ``server`` (``cons``); empty if it does not answer."""
        return {int(connection["sid"], 16) for connection in server.connections(timeout=1.0)}

    def server_of_session(self, session: int) -> LocalZooKeeper | None:
        """The running, unfrozen server ``session`` is connected to, if any."""
        for server in self.servers:
            if server.running and not server.frozen and session in self.sessions(server):
                return server
        return None

    def leader_member(self, timeout: float = 30.0) -> LocalZooKeeper:
        """The ensemble member that is ZooKeeper's leader now."""
        if self._ensemble is None:
            raise RuntimeError("a standalone server has no leader member")
        return self._ensemble.leader(timeout)

    def describe(self) -> str:
        return f"{self.kind} {self.connect_string}"
