"""One real ZooKeeper server from Debian's jars: for tests, the chaos suite, the bench and the demo.

Guarantees:

- a :class:`LocalZooKeeper` is a ``java ... QuorumPeerMain zoo.cfg`` child process with a work directory
  of its own (``zoo.cfg``, ``data/``, ``zookeeper.log`` appended to across restarts);
- its address never changes once it has served: :meth:`LocalZooKeeper.restart` brings it back on the
  same port with the same data, so sessions may survive;
- :meth:`LocalZooKeeper.start` returns only once ``srvr`` reports a ``Mode:`` line, and otherwise
  raises with the tail of the server's log; it never binds a port something else listens on;
- every server still running when the interpreter exits is killed (no stray JVMs after a crash).

What running a server means is set by options, not subclasses: ``tick_ms``, ``client_address``,
``four_letter_words`` (extra words for the whitelist) and ``request_log`` (one log line per request
processed). Stopping is SIGKILL, as a crash would be (a clean shutdown takes seconds and proves
nothing here).

Example::

    from pathlib import Path
    from tools.zookeeper import LocalZooKeeper, java_available

    reason = java_available()
    if reason is not None:
        raise SystemExit(reason)

    with LocalZooKeeper(Path("/tmp/zk-demo"), tick_ms=200) as zk:
        print(zk.address)                 # "127.0.0.1:40123"
        print(zk.four_letter("srvr"))     # "... Mode: standalone ..."
        zk.freeze()                       # SIGSTOP: clients see a hung server
        zk.thaw()                         # SIGCONT
        zk.restart()                      # SIGKILL + start; same port and data

Environment:

``ZOOKEEPER_CLASSPATH``
    Either a directory holding the jars (default ``/usr/share/java``; a directory without
    ``zookeeper.jar``, e.g. an Apache tarball's ``lib/``, is used as ``dir/*``) or an explicit
    ``os.pathsep``-separated classpath.
``JAVA_HOME``
    If set, ``$JAVA_HOME/bin/java`` is used instead of ``java`` on ``PATH``.
"""

from __future__ import annotations

import abc
import atexit
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import weakref
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Self

from tools.ports import free_port, port_free
from tools.waiting import poll_until

__all__ = [
    "DEFAULT_JAR_DIR",
    "FOUR_LETTER_WHITELIST",
    "HOST",
    "REQUEST_LOGGER",
    "LocalZooKeeper",
    "Served",
    "four_letter_word",
    "java_available",
    "java_executable",
    "zookeeper_classpath",
]

DEFAULT_JAR_DIR = Path("/usr/share/java")
MAIN_CLASS = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
#: The four-letter words every server answers; ``four_letter_words=`` adds to them.
FOUR_LETTER_WHITELIST = ("ruok", "srvr", "stat", "mntr", "wchs", "cons")
#: The logger that writes one DEBUG line per request processed (``request_log=True``).
REQUEST_LOGGER = "org.apache.zookeeper.server.FinalRequestProcessor"
HOST = "127.0.0.1"

# A `srvr` every 50 ms while a server starts: quick enough (a server serves in 0.3-0.6 s), and light
# on a 2-core machine where several JVMs start at once.
_POLL_INTERVAL = 0.05


# --------------------------------------------------------------------------
# discovery
# --------------------------------------------------------------------------


def java_executable() -> str | None:
    """``$JAVA_HOME/bin/java`` if it is executable, else ``java`` on ``PATH``, else None."""
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
    if java_executable() is None:
        return "no `java` executable on PATH (or in $JAVA_HOME/bin)"
    classpath, description = zookeeper_classpath()
    if classpath is None:
        return f"ZooKeeper jars not found ({description}); install Debian's `zookeeper` package"
    return None


# --------------------------------------------------------------------------
# talking to a server
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


def _parse_connections(cons_reply: str) -> list[dict[str, str]]:
    """The sessions' connections of a ``cons`` reply (see :meth:`LocalZooKeeper.connections`)."""
    found = []
    for raw in cons_reply.splitlines():
        peer, _, rest = raw.strip().partition("[")
        if not rest or "(" not in rest:
            continue
        items = rest.partition("(")[2].rstrip(")").split(",")
        fields = dict(item.split("=", 1) for item in items if "=" in item)
        if "sid" not in fields:
            continue  # the connection asking `cons` itself has no session
        fields["sid"] = fields["sid"].removeprefix("0x")
        fields["peer"] = peer.lstrip("/")
        found.append(fields)
    return found


# --------------------------------------------------------------------------
# lifecycle shared by a server, an ensemble and a chaos target
# --------------------------------------------------------------------------


def _all_threads_stopped(pid: int) -> bool:
    """Whether every thread of ``pid`` is stopped (state T or t) or gone."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except FileNotFoundError:
        return True
    for task in tasks:
        try:
            stat = (task / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread ended meanwhile
        if stat.rsplit(")", 1)[1].split()[0] not in ("T", "t", "Z", "X"):
            return False
    return True


class Served(abc.ABC):
    """Something that serves ZooKeeper between :meth:`start` and :meth:`stop`; as a context manager it
    is started on entry and stopped on exit, whatever the block raised."""

    #: ZooKeeper's tickTime (ms): the unit of every timeout the servers grant.
    tick_ms: int

    @property
    def min_session_timeout(self) -> float:
        """Smallest session timeout (seconds) the servers grant: 2 ticks."""
        return 2 * self.tick_ms / 1000.0

    @property
    def max_session_timeout(self) -> float:
        """Largest session timeout (seconds) the servers grant: 20 ticks."""
        return 20 * self.tick_ms / 1000.0

    @abc.abstractmethod
    def start(self) -> None:
        """Return once serving; raise (having stopped what was started) if it cannot."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Kill every process; safe to call twice and on what never started."""

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


_LIVE: weakref.WeakSet[LocalZooKeeper] = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:
    for server in list(_LIVE):
        server.stop()


# --------------------------------------------------------------------------
# a server
# --------------------------------------------------------------------------


class LocalZooKeeper(Served):
    """One standalone ZooKeeper server process on 127.0.0.1.

    ``workdir`` holds ``zoo.cfg``, ``data/`` and ``zookeeper.log`` (appended to across restarts).
    ``port=None`` picks a free port once, at construction, so :attr:`address` is stable across
    :meth:`restart`. Subclasses may extend :meth:`_config` (``zoo.cfg``) and :meth:`_command` (the
    JVM's argv) for what no option covers (TLS, say).
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
        four_letter_words: Iterable[str] = (),
        request_log: bool = False,
    ) -> None:
        """``four_letter_words``: whitelisted besides :data:`FOUR_LETTER_WHITELIST` (``dump``,
        ``conf``...). ``request_log``: the server logs one DEBUG line per request it processes, with its
        type (pings included), which measurements count."""
        if tick_ms <= 0:
            raise ValueError(f"tick_ms must be positive, got {tick_ms}")
        self.workdir = Path(workdir)
        self.tick_ms = tick_ms
        # clientPortAddress. "0.0.0.0" serves every loopback address (127.0.0.0/8), so that each
        # client can be given an address of its own (see address_for) and be cut off alone.
        self.client_address = client_address
        extra = [word for word in four_letter_words if word not in FOUR_LETTER_WHITELIST]
        self.four_letter_words: tuple[str, ...] = (*FOUR_LETTER_WHITELIST, *dict.fromkeys(extra))
        self.request_log = request_log
        self._auto_port = port is None
        self.port: int = free_port() if port is None else port
        self._proc: subprocess.Popen[bytes] | None = None
        self._frozen = False
        self._has_served = False  # once True, the port never changes
        self._launch_offset = 0  # where the current run's output starts in the log
        self._words_lock = threading.Lock()
        self._words_sent = 0

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

    def _config(self) -> dict[str, str]:
        return {
            "tickTime": str(self.tick_ms),
            "dataDir": str(self.data_dir),
            "clientPort": str(self.port),
            "clientPortAddress": self.client_address,
            "admin.enableServer": "false",
            "4lw.commands.whitelist": ",".join(self.four_letter_words),
            "maxClientCnxns": "0",
        }

    def _write_config(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        text = "".join(f"{key}={value}\n" for key, value in self._config().items())
        self.config_path.write_text(text)

    def _command(self) -> list[str]:
        java = java_executable()
        classpath, description = zookeeper_classpath()
        if java is None or classpath is None:
            raise RuntimeError(f"cannot start ZooKeeper: {java_available() or description}")
        logging = [
            # Timestamped log lines (slf4j-simple) make timing failures debuggable.
            "-Dorg.slf4j.simpleLogger.showDateTime=true",
            "-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS",
        ]
        if self.request_log:
            logging.append(f"-Dorg.slf4j.simpleLogger.log.{REQUEST_LOGGER}=debug")
        jvm = [java, "-Xmx128m", "-XX:+UseSerialGC", *logging]
        return [*jvm, "-cp", classpath, MAIN_CLASS, str(self.config_path)]

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

    @property
    def words_sent(self) -> int:
        """Four-letter words sent through :meth:`four_letter` so far: each is one packet in and one out
        in the server's own counters, which a measurement subtracts."""
        with self._words_lock:
            return self._words_sent

    def four_letter(self, cmd: str, timeout: float = 2.0) -> str:
        """Send a four-letter command (e.g. ``srvr``, ``mntr``) and return the reply."""
        with self._words_lock:
            self._words_sent += 1
        return four_letter_word(self.address, cmd, timeout)

    def connections(self, timeout: float = 2.0) -> list[dict[str, str]]:
        """The client connections ``cons`` reports, one dict each: the fields of its parenthesis
        (``sid`` without ``0x``, ``to``: the session timeout granted in ms, ``lresp``...) and
        ``peer`` (the client's ``host:port``). Empty if the server does not answer."""
        try:
            return _parse_connections(self.four_letter("cons", timeout))
        except OSError:
            return []

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
        if not port_free(self.port):
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

        poll_until(ready_or_dead, deadline, _POLL_INTERVAL)
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
            if may_repick and not port_free(self.port):
                self.port = free_port()
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
                self.port = free_port()

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

    def freeze(self, timeout: float = 5.0) -> None:
        """SIGSTOP the server: connections stay open but nothing is answered. Returns once every
        thread of the JVM has stopped: the signal is only queued when kill() returns, and a thread
        running on another core could still answer a request sent right after."""
        self._signal(signal.SIGSTOP)
        self._frozen = True
        assert self._proc is not None  # _signal checked
        pid = self._proc.pid
        if poll_until(lambda: _all_threads_stopped(pid), time.monotonic() + timeout) is None:
            raise RuntimeError(f"ZooKeeper {self.address} (pid {pid}) did not stop within {timeout:g}s")

    def thaw(self) -> None:
        """SIGCONT a frozen server."""
        self._signal(signal.SIGCONT)
        self._frozen = False

    def __repr__(self) -> str:
        state = "frozen" if self.frozen else "running" if self.running else "stopped"
        return f"<{type(self).__name__} {self.address} {state} workdir={self.workdir}>"
