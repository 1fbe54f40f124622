"""The means of breaking things: ZooKeeper targets, TCP relays, loopback cuts, tmpfs, a filler, a stall.

Everything here is undone by its own ``close``/``remove``/``stop``/``unmount``; callers do that in a
``finally``. Root-only means (iptables, mount) say why they cannot run through ``*_unavailable()``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import platform
import re
import select
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from tools.localzk import EnsembleMember, LocalEnsemble, LocalZooKeeper

ZK_KINDS = ("standalone", "ensemble")
TICK_MS = 200  # ZooKeeper tickTime: session timeouts of 0.4-4 s are granted


# --------------------------------------------------------------------------------------------------
# ZooKeeper
# --------------------------------------------------------------------------------------------------


class ZkTarget:
    """A standalone server or a 3-node ensemble on 127.0.0.1, with the faults the suite needs."""

    def __init__(self, kind: str, workdir: Path, tick_ms: int = TICK_MS) -> None:
        if kind not in ZK_KINDS:
            raise ValueError(f"unknown ZooKeeper kind {kind!r}")
        self.kind = kind
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
        try:
            reply = server.four_letter("cons", timeout=1.0)
        except OSError:
            return set()
        return {int(sid, 16) for sid in re.findall(r"sid=0x([0-9a-f]+)", reply)}

    def server_of_session(self, session: int) -> LocalZooKeeper | None:
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


# --------------------------------------------------------------------------------------------------
# a path per replica: TCP relays, and cutting them with iptables
# --------------------------------------------------------------------------------------------------


class Relay:
    """Forwards 127.0.0.1:``port`` to ``target`` so that one replica's path to one server is a port of
    its own, which a loopback firewall rule can cut without touching anybody else."""

    def __init__(self, target: str) -> None:
        host, _, port = target.rpartition(":")
        self.target = (host, int(port))
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._closed = False
        threading.Thread(target=self._accept, name=f"relay-{self.port}", daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=2.0)
                upstream.settimeout(None)
            except OSError:
                client.close()  # the server is down: the client sees a refused connection, as without us
                continue
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                if self._closed:
                    client.close()
                    upstream.close()
                    return
                self._sockets.update((client, upstream))
            pumps_left = [2]  # the pair is closed by whichever of its two pumps ends last
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst, pumps_left), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, pumps_left: list[int]) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)  # wakes the other pump
            # Close only once both pumps are done: a descriptor closed under the other pump's recv
            # could be reused by a new connection and read by the wrong pump. (Shut down but never
            # closed, every reconnection leaked two sockets: a long soak ran out of descriptors.)
            with self._lock:
                pumps_left[0] -= 1
                last = pumps_left[0] == 0
                if last:
                    self._sockets.difference_update((src, dst))
            if last:
                for sock in (src, dst):
                    sock.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            sockets, self._sockets = self._sockets, set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


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


CUT_COMMENT = "election-chaos"


class LoopbackCut:
    """DROP every packet to or from the given loopback ports (both directions of each TCP path).

    Each rule carries the comment ``election-chaos-<pid>``, so that :func:`remove_stale_cuts` can
    delete what a killed test run left behind."""

    def __init__(self, ports: list[int]) -> None:
        comment = ["-m", "comment", "--comment", f"{CUT_COMMENT}-{os.getpid()}"]
        self.rules = [
            ["INPUT", "-i", "lo", "-p", "tcp", direction, str(port), *comment, "-j", "DROP"]
            for port in ports
            for direction in ("--dport", "--sport")
        ]
        self._applied: list[list[str]] = []

    def apply(self) -> None:
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
    the client to cut must use ``host`` (:meth:`tools.localzk.LocalZooKeeper.address_for`)."""

    def __init__(self, host: str, port: int) -> None:
        comment = ["-m", "comment", "--comment", f"{CUT_COMMENT}-{os.getpid()}"]
        self.rules = [
            ["INPUT", "-i", "lo", "-p", "tcp", "-d", host, "--dport", str(port), *comment, "-j", "DROP"],
            ["INPUT", "-i", "lo", "-p", "tcp", "-s", host, "--sport", str(port), *comment, "-j", "DROP"],
        ]
        self._applied = []


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


# --------------------------------------------------------------------------------------------------
# storage faults
# --------------------------------------------------------------------------------------------------


def tmpfs_unavailable() -> str | None:
    """Why a tmpfs cannot be mounted here, or None."""
    if os.geteuid() != 0:
        return "mounting a tmpfs over file-dir needs root"
    if shutil.which("mount") is None or shutil.which("umount") is None:
        return "mount/umount are not installed"
    probe = Path(f"/tmp/election-chaos-probe-{os.getpid()}")
    probe.mkdir(exist_ok=True)
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            return f"cannot mount a tmpfs: {done.stderr.strip()}"
        subprocess.run(["umount", str(probe)], check=False, capture_output=True)
        return None
    finally:
        with contextlib.suppress(OSError):
            probe.rmdir()


class Tmpfs:
    """A tmpfs mounted at ``path`` (the replicas' file-dir), remountable read-only and back."""

    def __init__(self, path: Path, size: str = "16m") -> None:
        self.path = path
        self.size = size
        self.mounted = False

    def mount(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size},mode=0755", "tmpfs", str(self.path)],
            check=True,
            capture_output=True,
        )
        self.mounted = True

    def remount(self, mode: str, timeout: float = 10.0) -> None:
        """``mode`` is "ro" or "rw". Going read-only fails with EBUSY while a file is open for writing
        (a leader mid-write), so that is retried until ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            done = subprocess.run(
                ["mount", "-o", f"remount,{mode}", str(self.path)],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"cannot remount {self.path} {mode}: {done.stderr.strip()}")
            time.sleep(0.01)

    def unmount(self) -> None:
        if not self.mounted:
            return
        with contextlib.suppress(RuntimeError):
            self.remount("rw", timeout=1.0)
        done = subprocess.run(["umount", str(self.path)], capture_output=True, check=False)
        if done.returncode != 0:
            subprocess.run(["umount", "-l", str(self.path)], check=False, capture_output=True)
        self.mounted = False


class Filler:
    """Fills the file system of ``path`` (a file that is not the service's) and keeps it full: every
    20 ms it appends again until ENOSPC, so that space freed by retention is taken at once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.bytes = 0

    def _fill(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            for size in (1 << 20, 1 << 16, 1 << 12, 1 << 8, 1):
                chunk = bytes(size)
                while True:
                    try:
                        self.bytes += os.write(fd, chunk)
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
                        break
        finally:
            os.close(fd)

    def start(self) -> None:
        self._fill()
        self._thread = threading.Thread(target=self._keep_full, name="filler", daemon=True)
        self._thread.start()

    def _keep_full(self) -> None:
        while not self._stop.wait(0.02):
            with contextlib.suppress(OSError):
                self._fill()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


# --------------------------------------------------------------------------------------------------
# a foreign process holding the fence lock
# --------------------------------------------------------------------------------------------------

_HOLD_LOCK = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o640)
fcntl.lockf(fd, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()  # hold until our stdin is closed (or we are killed)
"""


class ForeignLockHolder:
    """A process that is not a replica (an operator's script, a stuck backup job) holding the POSIX
    lock on ``path`` (``file-dir/.election-fence.lock``) until :meth:`release`."""

    def __init__(self, path: Path, timeout: float = 10.0) -> None:
        self.path = path
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _HOLD_LOCK, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert self._proc.stdout is not None
            # poll, not select: a long soak's process may hold descriptors above FD_SETSIZE.
            poller = select.poll()
            poller.register(self._proc.stdout, select.POLLIN)
            ready = poller.poll(timeout * 1000)
            line = self._proc.stdout.readline() if ready else b""
            if line.strip() != b"locked":
                raise RuntimeError(f"the foreign lock holder did not lock {path} within {timeout:g}s")
        except BaseException:
            self.release()  # never leave the lock held behind a failed start: the cluster would end
            raise
        self.locked_at = time.time()

    @property
    def holding(self) -> bool:
        return self._proc.poll() is None

    def release(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        for stream in (self._proc.stdin, self._proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


# --------------------------------------------------------------------------------------------------
# a wall clock behind the others
# --------------------------------------------------------------------------------------------------


def _faketime_library() -> Path | None:
    found = sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))
    return found[0] if found else None


def faketime_unavailable() -> str | None:
    if _faketime_library() is None:
        return "libfaketime is not installed (apt-get install faketime): it skews one replica's clock"
    return None


def skewed_clock_env(offset: str) -> dict[str, str]:
    """Environment variables that run a process with its wall clock moved by ``offset`` (e.g.
    ``"-2s"``: 2 s behind) and its monotonic clock untouched: a pod on a node whose clock drifted."""
    library = _faketime_library()
    if library is None:
        raise RuntimeError(faketime_unavailable())
    return {"LD_PRELOAD": str(library), "FAKETIME": offset, "FAKETIME_DONT_FAKE_MONOTONIC": "1"}


# --------------------------------------------------------------------------------------------------
# a process held inside a system call
# --------------------------------------------------------------------------------------------------

_SYSCALLS = {"x86_64": {"linkat": 265, "fsync": 74}, "aarch64": {"linkat": 37, "fsync": 82}}


def strace_unavailable() -> str | None:
    if shutil.which("strace") is None:
        return "strace is not installed (apt-get install strace): it stalls a leader inside its write"
    if platform.machine() not in _SYSCALLS:
        return f"the syscall numbers of {platform.machine()} are not known here"
    return None


class SyscallStall:
    """Holds a process's main thread at the entry of its next ``syscall`` (``linkat``: the step that
    publishes a leader file, after every check; ``fsync``) for ``seconds`` or until :meth:`stop`,
    with strace's syscall delay injection. Only the main thread is traced: kazoo's thread keeps the
    session alive meanwhile."""

    def __init__(self, pid: int, seconds: float, log_path: Path, syscall: str = "linkat") -> None:
        self.pid = pid
        self.log_path = log_path
        self._nr = _SYSCALLS[platform.machine()][syscall]
        self._proc = subprocess.Popen(
            [
                "strace",
                "-qq",
                "-p",
                str(pid),
                "-e",
                f"trace={syscall}",
                "-e",
                f"inject={syscall}:delay_enter={int(seconds * 1e6)}:when=1",
                "-o",
                str(log_path),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def syscall(self) -> int | None:
        """The syscall the main thread is blocked in (None while it runs)."""
        try:
            first = Path(f"/proc/{self.pid}/syscall").read_text().split()[0]
        except (OSError, IndexError):
            return None
        return int(first) if first.lstrip("-").isdigit() else None

    def stalled(self) -> bool:
        return self.syscall() == self._nr

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()  # strace detaches on SIGTERM
            try:
                self._proc.wait(5.0)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
