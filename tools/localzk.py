"""Run real ZooKeeper servers from Debian's jars, for tests and local demos.

Standard library only.  Each server is a ``java ... QuorumPeerMain zoo.cfg``
child process with its own work directory (config, data dir and
``zookeeper.log``).  Every wait is a poll of a predicate against a deadline.

Example::

    from pathlib import Path
    from tools.localzk import LocalEnsemble, LocalZooKeeper, java_available

    reason = java_available()
    if reason is not None:
        raise SystemExit(reason)

    with LocalZooKeeper(Path("/tmp/zk-demo"), tick_ms=200) as zk:
        print(zk.address)                 # "127.0.0.1:40123"
        print(zk.four_letter("srvr"))     # "... Mode: standalone ..."
        zk.freeze()                       # SIGSTOP: clients see a hung server
        zk.thaw()                         # SIGCONT
        zk.restart()                      # SIGKILL + start; same port and data

    with LocalEnsemble(Path("/tmp/zk-ens"), size=3) as ens:
        print(ens.connect_string)         # "127.0.0.1:p1,127.0.0.1:p2,..."
        ens.leader().stop()               # force a leader election

Environment:

``ZOOKEEPER_CLASSPATH``
    Either a directory holding the jars (default ``/usr/share/java``; a
    directory without ``zookeeper.jar``, e.g. an Apache tarball's ``lib/``, is
    used as ``dir/*``) or an explicit ``os.pathsep``-separated classpath.
``JAVA_HOME``
    If set, ``$JAVA_HOME/bin/java`` is used instead of ``java`` on ``PATH``.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import TypeVar

__all__ = [
    "DEFAULT_JAR_DIR",
    "EnsembleMember",
    "LocalEnsemble",
    "LocalZooKeeper",
    "four_letter_word",
    "java_available",
    "zookeeper_classpath",
]

DEFAULT_JAR_DIR = Path("/usr/share/java")
MAIN_CLASS = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
FOUR_LETTER_WHITELIST = "ruok,srvr,stat,mntr,wchs,cons"
HOST = "127.0.0.1"

_T = TypeVar("_T")
_POLL_INTERVAL = 0.05


# --------------------------------------------------------------------------
# discovery
# --------------------------------------------------------------------------


def _java_executable() -> str | None:
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("java")


def zookeeper_classpath() -> tuple[str | None, str]:
    """Return ``(classpath, description)``; classpath is None if no jar is found."""
    override = os.environ.get("ZOOKEEPER_CLASSPATH", "").strip()
    source = f"ZOOKEEPER_CLASSPATH={override!r}" if override else str(DEFAULT_JAR_DIR)
    if override and not Path(override).is_dir():
        entries = [e for e in override.split(os.pathsep) if e]
        missing = [e for e in entries if not e.endswith("*") and not Path(e).exists()]
        if not entries or missing:
            return None, f"{source}: missing {missing or 'entries'}"
        return os.pathsep.join(entries), source
    jar_dir = Path(override) if override else DEFAULT_JAR_DIR
    main_jar = jar_dir / "zookeeper.jar"
    if main_jar.is_file():
        # Debian's zookeeper.jar carries its dependencies in its manifest.
        entries = [str(main_jar)]
        simple = jar_dir / "slf4j-simple.jar"
        if simple.is_file():
            entries.append(str(simple))
        return os.pathsep.join(entries), source
    if override and any(jar_dir.glob("zookeeper-*.jar")):
        return str(jar_dir / "*"), source
    return None, f"{source}: no zookeeper.jar"


def java_available() -> str | None:
    """Return why local servers cannot run, or None if java and the jars exist."""
    if _java_executable() is None:
        return "no `java` executable on PATH (or in $JAVA_HOME/bin)"
    classpath, description = zookeeper_classpath()
    if classpath is None:
        return f"ZooKeeper jars not found ({description}); install Debian's `zookeeper` package"
    return None


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def four_letter_word(address: str, cmd: str, timeout: float = 2.0) -> str:
    """Send a four-letter command to ``host:port`` and return the whole reply.

    Raises OSError (including ``TimeoutError``) if the server does not answer.
    """
    host, _, port = address.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(cmd.encode("ascii"))
        chunks: list[bytes] = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


def _parse_mode(srvr_reply: str) -> str | None:
    for line in srvr_reply.splitlines():
        if line.startswith("Mode:"):
            return line.partition(":")[2].strip()
    return None


def _free_ports(count: int) -> list[int]:
    """Distinct free TCP ports on 127.0.0.1 (all held open until all are picked)."""
    with ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((HOST, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def _port_free(port: int) -> bool:
    """True if nothing listens on 127.0.0.1:port (TIME_WAIT leftovers don't count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _poll(predicate: Callable[[], _T | None], deadline: float) -> _T | None:
    """Poll until predicate returns a truthy value or the deadline passes."""
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(min(_POLL_INTERVAL, max(0.0, deadline - time.monotonic())))


_LIVE: weakref.WeakSet[LocalZooKeeper] = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:
    for server in list(_LIVE):
        server.stop()


# --------------------------------------------------------------------------
# servers
# --------------------------------------------------------------------------


class LocalZooKeeper:
    """One standalone ZooKeeper server process on 127.0.0.1.

    ``workdir`` holds ``zoo.cfg``, ``data/`` and ``zookeeper.log`` (appended to
    across restarts).  ``port=None`` picks a free port once, at construction, so
    :attr:`address` is stable across :meth:`restart`.
    """

    #: Values of the ``Mode:`` line of ``srvr`` that count as "serving".
    ready_modes: frozenset[str] | None = None  # None: any Mode line

    def __init__(
        self,
        workdir: Path,
        tick_ms: int = 200,
        port: int | None = None,
        *,
        client_address: str = HOST,
    ) -> None:
        if tick_ms <= 0:
            raise ValueError(f"tick_ms must be positive, got {tick_ms}")
        self.workdir = Path(workdir)
        self.tick_ms = tick_ms
        # clientPortAddress. "0.0.0.0" serves every loopback address (127.0.0.0/8), so that each
        # client can be given an address of its own (see address_for) and be cut off alone.
        self.client_address = client_address
        self._auto_port = port is None
        self.port: int = _free_ports(1)[0] if port is None else port
        self._proc: subprocess.Popen[bytes] | None = None
        self._frozen = False
        self._has_served = False  # once True, the port never changes
        self._launch_offset = 0  # where the current run's output starts in the log

    # -- configuration ------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def config_path(self) -> Path:
        return self.workdir / "zoo.cfg"

    @property
    def log_path(self) -> Path:
        return self.workdir / "zookeeper.log"

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def address_for(self, host: str) -> str:
        """``host:port`` of this server as reached through ``host`` (e.g. ``127.0.0.12``): a client
        given an address of its own has a TCP path a firewall rule can cut without touching others.
        Needs ``client_address="0.0.0.0"`` (or ``host`` itself)."""
        if self.client_address not in ("0.0.0.0", host):
            raise ValueError(f"this server listens on {self.client_address} only, not on {host}")
        return f"{host}:{self.port}"

    @property
    def min_session_timeout(self) -> float:
        """Smallest session timeout (seconds) the server grants: 2 ticks."""
        return 2 * self.tick_ms / 1000.0

    @property
    def max_session_timeout(self) -> float:
        """Largest session timeout (seconds) the server grants: 20 ticks."""
        return 20 * self.tick_ms / 1000.0

    def _config(self) -> dict[str, str]:
        return {
            "tickTime": str(self.tick_ms),
            "dataDir": str(self.data_dir),
            "clientPort": str(self.port),
            "clientPortAddress": self.client_address,
            "admin.enableServer": "false",
            "4lw.commands.whitelist": FOUR_LETTER_WHITELIST,
            "maxClientCnxns": "0",
        }

    def _write_config(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        text = "".join(f"{key}={value}\n" for key, value in self._config().items())
        self.config_path.write_text(text)

    def _command(self) -> list[str]:
        java = _java_executable()
        classpath, description = zookeeper_classpath()
        if java is None or classpath is None:
            raise RuntimeError(f"cannot start ZooKeeper: {java_available() or description}")
        return [
            java,
            "-Xmx128m",
            "-XX:+UseSerialGC",
            # Timestamped log lines (slf4j-simple) make timing failures debuggable.
            "-Dorg.slf4j.simpleLogger.showDateTime=true",
            "-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS",
            "-cp",
            classpath,
            MAIN_CLASS,
            str(self.config_path),
        ]

    # -- state --------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """True while the process exists (frozen or not)."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def frozen(self) -> bool:
        return self.running and self._frozen

    def four_letter(self, cmd: str, timeout: float = 2.0) -> str:
        """Send a four-letter command (e.g. ``srvr``, ``mntr``) and return the reply."""
        return four_letter_word(self.address, cmd, timeout)

    def connections(self, timeout: float = 2.0) -> list[dict[str, str]]:
        """The client connections ``cons`` reports, one dict each: the fields of its parenthesis
        (``sid`` without ``0x``, ``to``: the session timeout granted in ms, ``lresp``...) and
        ``peer`` (the client's ``host:port``). Empty if the server does not answer."""
        try:
            reply = self.four_letter("cons", timeout)
        except OSError:
            return []
        found = []
        for raw in reply.splitlines():
            peer, _, rest = raw.strip().partition("[")
            if not rest or "(" not in rest:
                continue
            fields = dict(
                item.split("=", 1) for item in rest.partition("(")[2].rstrip(")").split(",") if "=" in item
            )
            if "sid" not in fields:
                continue  # the connection asking `cons` itself has no session
            fields["sid"] = fields["sid"].removeprefix("0x")
            fields["peer"] = peer.lstrip("/")
            found.append(fields)
        return found

    def mode(self, timeout: float = 1.0) -> str | None:
        """``Mode:`` reported by ``srvr`` (standalone/leader/follower), None if not serving."""
        try:
            return _parse_mode(self.four_letter("srvr", timeout))
        except OSError:
            return None

    def is_serving(self) -> bool:
        mode = self.mode()
        if mode is None:
            return False
        return self.ready_modes is None or mode in self.ready_modes

    def log_tail(self, n: int = 50) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return f"(no log at {self.log_path})"
        return "\n".join(lines[-n:])

    # -- lifecycle ----------------------------------------------------------

    def launch(self) -> None:
        """Start the process without waiting; see :meth:`wait_until_serving`."""
        if self.running:
            raise RuntimeError(f"ZooKeeper {self.address} is already running (pid {self.pid})")
        if not _port_free(self.port):
            # Refuse, or `srvr` readiness polls would be answered by the squatter.
            raise RuntimeError(f"cannot start ZooKeeper: {self.address} is already in use by another process")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        command = self._command()
        with self.log_path.open("ab") as log:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            log.write(f"\n==== localzk {stamp}: {' '.join(command)}\n".encode())
            log.flush()
            self._launch_offset = log.tell()
            self._proc = subprocess.Popen(
                command,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # keep terminal Ctrl-C away from it
            )
        self._frozen = False
        _LIVE.add(self)

    def wait_until_serving(self, timeout: float = 30.0) -> None:
        """Poll ``srvr`` until the server reports a ready ``Mode:``.

        Raises RuntimeError (with the log tail) if the process exits or the
        deadline passes; in the latter case the process is killed.
        """
        deadline = time.monotonic() + timeout
        proc = self._proc
        if proc is None:
            raise RuntimeError(f"ZooKeeper {self.address} was never started")

        def ready_or_dead() -> bool:
            return proc.poll() is not None or self.is_serving()

        _poll(ready_or_dead, deadline)
        if proc.poll() is not None:
            raise RuntimeError(
                f"ZooKeeper {self.address} exited with code {proc.returncode} while starting; "
                f"log {self.log_path}:\n{self.log_tail()}"
            )
        if not self.is_serving():
            self.stop()
            raise RuntimeError(
                f"ZooKeeper {self.address} not serving after {timeout:.1f}s "
                f"(wanted Mode in {sorted(self.ready_modes) if self.ready_modes else 'any'}); "
                f"log {self.log_path}:\n{self.log_tail()}"
            )

    def start(self, timeout: float = 30.0) -> None:
        """Start the server and wait until ``srvr`` reports a ``Mode:`` line."""
        may_repick = self._auto_port and not self._has_served
        attempts = 3 if may_repick else 1
        for attempt in range(attempts):
            if may_repick and not _port_free(self.port):
                self.port = _free_ports(1)[0]
            self.launch()
            try:
                self.wait_until_serving(timeout)
                self._has_served = True
                return
            except RuntimeError:
                # Someone grabbed our auto-picked port between the check and the JVM's bind.
                with self.log_path.open("rb") as log:
                    log.seek(self._launch_offset)
                    lost_race = b"Address already in use" in log.read()
                if not lost_race or attempt == attempts - 1:
                    raise
                self.port = _free_ports(1)[0]

    def stop(self) -> None:
        """SIGKILL the server (no clean shutdown) and wait for it to exit."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()  # SIGKILL also ends a SIGSTOPped process
        proc.wait()
        self._frozen = False
        _LIVE.discard(self)

    def restart(self, timeout: float = 30.0) -> None:
        """Kill and start again on the same port and data dir (sessions can survive)."""
        self.stop()
        self.start(timeout)

    def _signal(self, sig: signal.Signals) -> None:
        if self._proc is None or not self.running:
            raise RuntimeError(f"ZooKeeper {self.address} is not running")
        self._proc.send_signal(sig)

    def freeze(self) -> None:
        """SIGSTOP the server: connections stay open but nothing is answered."""
        self._signal(signal.SIGSTOP)
        self._frozen = True

    def thaw(self) -> None:
        """SIGCONT a frozen server."""
        self._signal(signal.SIGCONT)
        self._frozen = False

    def __enter__(self) -> LocalZooKeeper:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "frozen" if self.frozen else "running" if self.running else "stopped"
        return f"<{type(self).__name__} {self.address} {state} workdir={self.workdir}>"


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


class LocalEnsemble:
    """``size`` ZooKeeper servers forming one quorum on 127.0.0.1.

    Member ``i`` (1-based ``myid``) lives in ``workdir/zk<i>``.  Members are
    :class:`EnsembleMember` objects with the full LocalZooKeeper API
    (stop/start/restart/freeze/thaw/address/four_letter/log_tail).
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
        ``client_address`` as for :class:`LocalZooKeeper`."""
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self.workdir = Path(workdir)
        self.tick_ms = tick_ms
        ports = iter(_free_ports(3 * size))
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

    @property
    def min_session_timeout(self) -> float:
        return 2 * self.tick_ms / 1000.0

    @property
    def max_session_timeout(self) -> float:
        return 20 * self.tick_ms / 1000.0

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

        found = _poll(find, time.monotonic() + timeout)
        if found is None:
            tails = "\n".join(f"--- zk{m.myid}:\n{m.log_tail(20)}" for m in self.members)
            raise RuntimeError(f"no leader among {self.connect_string} after {timeout:.1f}s\n{tails}")
        return found

    def __enter__(self) -> LocalEnsemble:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
