"""A ZooKeeper quorum on 127.0.0.1: ``size`` :class:`~tools.zookeeper.LocalZooKeeper` servers voting together.

Guarantees: :meth:`LocalEnsemble.start` returns once every member reports ``Mode: leader`` or
``follower`` (a 1-member ensemble: ``standalone``), and stops them all if any cannot; every member
keeps its ports (client, quorum, election) and data for the ensemble's life, so a stopped member
started again rejoins the same quorum. Members have the whole server API (stop, start, restart,
freeze, thaw, four-letter words, log tail).

Example::

    with LocalEnsemble(Path("/tmp/zk-ens"), size=3) as ens:
        print(ens.connect_string)         # "127.0.0.1:p1,127.0.0.1:p2,..."
        ens.leader().stop()               # force a leader election
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from tools.ports import free_ports
from tools.waiting import poll_until
from tools.zookeeper import HOST, LocalZooKeeper, Served

__all__ = ["EnsembleMember", "LocalEnsemble"]

# How often `leader()` asks every member for its mode: a leader election takes ~1 s.
_POLL_INTERVAL = 0.05


class EnsembleMember(LocalZooKeeper):
    """A LocalZooKeeper configured as one voting member of a :class:`LocalEnsemble`."""

    def __init__(
        self,
        workdir: Path,
        myid: int,
        servers: Mapping[int, tuple[int, int]],
        tick_ms: int,
        port: int,
        *,
        client_address: str = HOST,
        sync_limit: int = 5,
    ) -> None:
        """``servers``: every member's ``myid`` -> (quorum port, election port), this one included."""
        super().__init__(workdir, tick_ms=tick_ms, port=port, client_address=client_address)
        self.myid = myid
        self._servers = dict(servers)
        self.sync_limit = sync_limit
        # A 1-node "ensemble" runs in standalone mode.
        self.ready_modes = frozenset({"standalone"} if len(servers) == 1 else {"leader", "follower"})

    def _config(self) -> dict[str, str]:
        config = super()._config()
        # initLimit must cover syncLimit: a follower's first sync is allowed initLimit ticks.
        config.update({"initLimit": str(max(10, self.sync_limit)), "syncLimit": str(self.sync_limit)})
        for sid, (quorum, election) in sorted(self._servers.items()):
            config[f"server.{sid}"] = f"{HOST}:{quorum}:{election}"
        return config

    @property
    def quorum_port(self) -> int:
        """The port this member listens on for followers (used while it is ZooKeeper's leader)."""
        return self._servers[self.myid][0]

    @property
    def election_port(self) -> int:
        """The port this member listens on for leader-election connections of other members."""
        return self._servers[self.myid][1]

    def _write_config(self) -> None:
        super()._write_config()
        (self.data_dir / "myid").write_text(f"{self.myid}\n")


class LocalEnsemble(Served):
    """``size`` ZooKeeper servers forming one quorum on 127.0.0.1.

    Member ``i`` (1-based ``myid``) lives in ``workdir/zk<i>``.
    """

    def __init__(
        self,
        workdir: Path,
        size: int = 3,
        tick_ms: int = 200,
        *,
        client_address: str = HOST,
        sync_limit: int = 5,
    ) -> None:
        """``sync_limit`` (ticks): how long a follower may be out of touch with ZooKeeper's leader
        before either gives up on the other; meanwhile the follower goes on serving its clients.
        ``client_address`` as for :class:`~tools.zookeeper.LocalZooKeeper`."""
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self.workdir = Path(workdir)
        self.tick_ms = tick_ms
        ports = iter(free_ports(3 * size))
        client_ports = {sid: next(ports) for sid in range(1, size + 1)}
        peer_ports = {sid: (next(ports), next(ports)) for sid in range(1, size + 1)}
        self.members: list[EnsembleMember] = [
            EnsembleMember(
                self.workdir / f"zk{sid}",
                sid,
                peer_ports,
                tick_ms,
                client_ports[sid],
                client_address=client_address,
                sync_limit=sync_limit,
            )
            for sid in range(1, size + 1)
        ]

    @property
    def connect_string(self) -> str:
        return ",".join(member.address for member in self.members)

    def __iter__(self) -> Iterator[EnsembleMember]:
        return iter(self.members)

    def start(self, timeout: float = 60.0) -> None:
        """Launch every member, then wait until each is leader or follower."""
        deadline = time.monotonic() + timeout
        try:
            for member in self.members:
                if not member.running:
                    member.launch()
            for member in self.members:
                member.wait_until_serving(max(0.0, deadline - time.monotonic()))
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for member in self.members:
            member.stop()

    def leader(self, timeout: float = 10.0) -> EnsembleMember:
        """The member currently reporting ``Mode: leader`` (polls until one does)."""

        def find() -> EnsembleMember | None:
            for member in self.members:
                if member.running and not member.frozen and member.mode() == "leader":
                    return member
            return None

        found = poll_until(find, time.monotonic() + timeout, _POLL_INTERVAL)
        if found is None:
            tails = "\n".join(f"--- zk{m.myid}:\n{m.log_tail(20)}" for m in self.members)
            raise RuntimeError(f"no leader among {self.connect_string} after {timeout:.1f}s\n{tails}")
        return found
