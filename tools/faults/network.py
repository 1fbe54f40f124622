"""TCP paths on the loopback cut by firewall rules: a partition between two processes of one machine.

A cut is a set of iptables rules on ``INPUT -i lo`` that DROP the packets of chosen TCP paths in both
directions: bytes are neither delivered nor answered, connections stay open on both sides until their
own timeouts, just as when a network partitions. What is cut is named by ports, which on the loopback
identify a path:

- :class:`LoopbackCut`: every packet to or from given ports (a :class:`tools.relay.Relay`'s port: one
  client's path to one server);
- :class:`AddressCut`: the paths of the clients that reach a server through a loopback address of
  their own (``127.0.0.12``), reconnections included;
- :func:`isolate_member`: one ensemble member from the others (quorum and election traffic only).

Undone by :meth:`LoopbackCut.remove`. Every rule carries the comment ``election-chaos-<pid>``, so
:func:`remove_stale_cuts` deletes what a killed run left behind. Needs root and iptables
(:func:`iptables_unavailable` says why not).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

from tools.ensemble import EnsembleMember

__all__ = [
    "CUT_COMMENT",
    "AddressCut",
    "LoopbackCut",
    "iptables_unavailable",
    "isolate_member",
    "remove_stale_cuts",
    "tcp_connections",
]

CUT_COMMENT = "election-chaos"


def iptables_unavailable() -> str | None:
    """Why loopback cuts cannot be made here, or None."""
    if os.geteuid() != 0:
        return "cutting a TCP path with iptables needs root"
    if shutil.which("iptables") is None:
        return "iptables is not installed (apt-get install iptables)"
    probe = subprocess.run(
        ["iptables", "-w", "5", "-L", "INPUT", "-n"], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        return f"iptables does not work here: {probe.stderr.strip() or probe.returncode}"
    return None


class LoopbackCut:
    """DROP every packet to or from the given loopback ports (both directions of each TCP path).

    Each rule carries the comment ``election-chaos-<pid>``, so that :func:`remove_stale_cuts` can
    delete what a killed test run left behind."""

    def __init__(self, ports: list[int]) -> None:
        self._drop([[direction, str(port)] for port in ports for direction in ("--dport", "--sport")])

    def _drop(self, matches: list[list[str]]) -> None:
        """One rule per match (iptables match options) that DROPs the loopback TCP packets it selects."""
        comment = ["-m", "comment", "--comment", f"{CUT_COMMENT}-{os.getpid()}"]
        self.rules = [["INPUT", "-i", "lo", "-p", "tcp", *match, *comment, "-j", "DROP"] for match in matches]
        self._applied: list[list[str]] = []

    def apply(self) -> None:
        """Insert the rules: from now on the paths are silent."""
        for rule in self.rules:
            subprocess.run(["iptables", "-w", "5", "-I", *rule], check=True, capture_output=True)
            self._applied.append(rule)

    def remove(self) -> None:
        """Delete every rule this cut inserted (safe to call twice, or after a partial apply)."""
        while self._applied:
            rule = self._applied.pop()
            subprocess.run(["iptables", "-w", "5", "-D", *rule], check=False, capture_output=True)

    @property
    def active(self) -> bool:
        return bool(self._applied)


class AddressCut(LoopbackCut):
    """DROP the TCP paths of the clients that reach a server's ``port`` through the loopback address
    ``host`` (e.g. ``127.0.0.12``), in both directions: new connections included, so a client that
    reconnects (on a new local port) stays cut off. The server must listen on ``0.0.0.0``, and only
    the client to cut must use ``host`` (:meth:`tools.zookeeper.LocalZooKeeper.address_for`)."""

    def __init__(self, host: str, port: int) -> None:
        self._drop([["-d", host, "--dport", str(port)], ["-s", host, "--sport", str(port)]])


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in os.listdir(fd_dir):
        with contextlib.suppress(OSError):
            target = os.readlink(fd_dir / fd)
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    return inodes


def tcp_connections(pid: int) -> list[tuple[int, int]]:
    """(local port, remote port) of the established TCP connections of process ``pid`` (IPv4 and
    IPv6 sockets alike: a JVM uses IPv6 sockets for IPv4 peers)."""
    inodes = _socket_inodes(pid)
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as lines:
            next(lines)  # header
            for line in lines:
                fields = line.split()
                established = fields[3] == "01"
                if established and int(fields[9]) in inodes:
                    local = int(fields[1].rpartition(":")[2], 16)
                    remote = int(fields[2].rpartition(":")[2], 16)
                    found.append((local, remote))
    return found


def isolate_member(member: EnsembleMember, others: list[EnsembleMember]) -> LoopbackCut:
    """A cut of ``member`` from the other members of its ensemble (quorum and election traffic
    only: its clients keep their connections), not yet applied.

    The members all live on 127.0.0.1, so the cut is made of ports: the member's own quorum and
    election ports (connections the others opened to it) and the local ports of the connections it
    opened to theirs (its follower connection to ZooKeeper's leader). A new connection it opens
    later is not cut: give it the lowest ``myid``, so that it opens no election connection that
    lasts (a member keeps only election connections opened by the higher id), and cut it while it
    follows."""
    if any(other.myid < member.myid for other in others):
        raise ValueError(f"isolate the member with the lowest myid, not zk{member.myid}")
    assert member.pid is not None, f"zk{member.myid} is not running"
    peer_ports = {port for other in others for port in (other.quorum_port, other.election_port)}
    own = [local for local, remote in tcp_connections(member.pid) if remote in peer_ports]
    return LoopbackCut([member.quorum_port, member.election_port, *own])


def remove_stale_cuts() -> list[str]:
    """Delete the cut rules of test runs that no longer exist; return the rules deleted."""
    if iptables_unavailable() is not None:
        return []
    listing = subprocess.run(
        ["iptables", "-w", "5", "-S", "INPUT"], capture_output=True, text=True, check=False
    ).stdout
    removed = []
    for line in listing.splitlines():
        match = re.search(rf'--comment "?{CUT_COMMENT}-(\d+)"?', line)
        if not match or not line.startswith("-A ") or Path(f"/proc/{match.group(1)}").exists():
            continue
        rule = shlex.split(line)[1:]  # "-A INPUT ..." -> "INPUT ..."
        subprocess.run(["iptables", "-w", "5", "-D", *rule], check=False, capture_output=True)
        removed.append(line)
    return removed
