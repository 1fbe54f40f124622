"""Settings of one ``election run`` process, and the parsers that turn flag/env text into them.

Every parser raises :class:`ConfigError` with a sentence that names what is wrong; the CLI adds which
flag (or ``ELECTION_*`` variable) the text came from and exits with status 2. Nothing here touches
ZooKeeper; ``parse_file_dir`` only looks at the path (it does not create it: that is Init's job).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
from dataclasses import dataclass, field
from pathlib import Path

from app.durations import DurationError, format_duration, parse_duration
from app.leases import KILL_MARGIN, exec_grace_bound, lease_of

ENV_PREFIX = "ELECTION"


class ConfigError(ValueError):
    """A setting's value cannot be used; the message says why, in one line."""


def env_var(flag: str) -> str:
    """The environment variable of a flag: ``--some-flag`` -> ``ELECTION_SOME_FLAG``."""
    return f"{ENV_PREFIX}_{flag.lstrip('-').upper().replace('-', '_')}"


@dataclass(frozen=True)
class HostPort:
    """A ``host:port`` pair; ``host`` may be empty (all interfaces) only for listen addresses."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_host_port(text: str, *, allow_empty_host: bool = False, allow_port_zero: bool = False) -> HostPort:
    """Parse ``host:port`` (``[v6]:port`` for IPv6); the port must be 1-65535 (0 only if allowed)."""
    raw = text.strip()
    if not raw:
        raise ConfigError("empty address")
    if raw.startswith("["):
        end = raw.find("]")
        if end < 0 or raw[end + 1 : end + 2] != ":":
            raise ConfigError(f"{text!r} is not host:port")
        host, port_text = raw[1:end], raw[end + 2 :]
    else:
        host, sep, port_text = raw.rpartition(":")
        if not sep:
            raise ConfigError(f"{text!r} has no port (expected host:port)")
        if ":" in host:
            raise ConfigError(f"{text!r} is not host:port (write IPv6 hosts as [addr]:port)")
    if not host and not allow_empty_host:
        raise ConfigError(f"{text!r} has no host")
    if host and not re.fullmatch(r"[A-Za-z0-9._\-:%]+", host):
        raise ConfigError(f"{text!r} has an invalid host")
    if not re.fullmatch(r"[0-9]{1,5}", port_text):
        raise ConfigError(f"{text!r} has a bad port {port_text!r}")
    port = int(port_text)
    low = 0 if allow_port_zero else 1
    if not low <= port <= 65535:
        raise ConfigError(f"{text!r} has a port out of range {low}-65535")
    return HostPort(host, port)


def parse_zk_servers(text: str) -> tuple[HostPort, ...]:
    """A comma-separated, non-empty list of ``host:port`` (no chroot: see :func:`parse_zk_connect`)."""
    items = [item.strip() for item in text.split(",")]
    if not any(items):
        raise ConfigError("no ZooKeeper server given (expected host:port[,host:port...])")
    if not all(items):
        raise ConfigError(f"{text!r} has an empty entry")
    return tuple(parse_host_port(item) for item in items)


@dataclass(frozen=True)
class ZkConnect:
    """What ``--zk-servers`` holds: the servers, and the chroot every path is relative to (or None)."""

    servers: tuple[HostPort, ...]
    chroot: str | None = None


def parse_zk_connect(text: str) -> ZkConnect:
    """A ZooKeeper connect string: ``host:port[,host:port...][/chroot]``, as every ZooKeeper client
    takes it. The chroot is one suffix of the whole list (after the last server), a valid ZooKeeper path;
    a bare ``/`` means none, as in ZooKeeper's own ConnectStringParser."""
    servers, slash, chroot = text.strip().partition("/")
    if not slash:
        return ZkConnect(parse_zk_servers(servers))
    if "," in chroot:
        raise ConfigError(f"{text!r} has a chroot in the middle of the list; put it after the last server")
    hosts = parse_zk_servers(servers)
    if chroot.strip() == "":
        return ZkConnect(hosts)
    try:
        return ZkConnect(hosts, parse_zk_path("/" + chroot))
    except ConfigError as exc:
        raise ConfigError(f"chroot {'/' + chroot!r}: {exc}") from None


# Go's time.Duration is an int64 count of nanoseconds: time.ParseDuration refuses anything longer.
MAX_DURATION_SECONDS = (2**63 - 1) / 1e9


def parse_positive_duration(text: str) -> float:
    """A Go duration greater than zero, in seconds."""
    try:
        seconds = parse_duration(text)
    except DurationError as exc:
        raise ConfigError(str(exc)) from None
    if seconds <= 0:
        raise ConfigError(f"{text!r} must be a positive duration")
    if seconds > MAX_DURATION_SECONDS:
        raise ConfigError(f"{text!r} is longer than the longest duration, 2562047h47m16.854775807s")
    return seconds


# kazoo sends the session timeout to ZooKeeper as a signed 32-bit count of milliseconds: longer ones
# overflow its connect request (and surface only as "unreachable").
MAX_ZK_TIMEOUT_SECONDS = (2**31 - 1) / 1000


def parse_zk_timeout(text: str) -> float:
    """A positive duration that ZooKeeper can carry in milliseconds: at most 2**31-1 ms (about 24.8 days)."""
    seconds = parse_positive_duration(text)
    if seconds > MAX_ZK_TIMEOUT_SECONDS:
        raise ConfigError(
            f"{text!r} is longer than ZooKeeper can carry: at most {format_duration(MAX_ZK_TIMEOUT_SECONDS)}"
            " (2**31-1 ms)"
        )
    return seconds


# The shortest leader-timeout and attempter-timeout: each period costs a file write with two fsyncs
# (leader) or a ZooKeeper round trip (attempter), a few milliseconds on a good day; below this the
# schedule would only fall behind. The benchmarks run the leader at 10 ms.
MIN_PERIOD_SECONDS = 0.01


def parse_period(text: str) -> float:
    """A positive duration of at least ``MIN_PERIOD_SECONDS`` (10ms)."""
    seconds = parse_positive_duration(text)
    if seconds < MIN_PERIOD_SECONDS:
        raise ConfigError(
            f"{text!r} is shorter than {format_duration(MIN_PERIOD_SECONDS)}, the shortest period the"
            " schedule can keep"
        )
    return seconds


def parse_positive_int(text: str) -> int:
    """A decimal integer >= 1."""
    raw = text.strip()
    if not re.fullmatch(r"\+?[0-9]+", raw):
        raise ConfigError(f"{text!r} is not a positive integer")
    if len(raw.lstrip("+").lstrip("0")) > 18:
        raise ConfigError(f"{text!r} is too large")
    value = int(raw)
    if value < 1:
        raise ConfigError(f"{text!r} must be at least 1")
    return value


# Directories a leader must never fill or prune: retention deletes files, so a typo here is costly.
_FORBIDDEN_DIRS = frozenset(
    Path(p)
    for p in (
        "/",
        "/bin",
        "/boot",
        "/dev",
        "/etc",
        "/lib",
        "/lib64",
        "/proc",
        "/root",
        "/run",
        "/sbin",
        "/sys",
        "/usr",
        "/var",
        "/home",
    )
)


def parse_file_dir(text: str) -> Path:
    """A directory path: it may be missing (Init creates it), but if it exists it must be a directory."""
    if not text.strip():
        raise ConfigError("empty path")
    if "\0" in text:
        raise ConfigError("path contains a NUL byte")
    path = Path(os.path.abspath(os.path.expanduser(text)))
    if path in _FORBIDDEN_DIRS:
        raise ConfigError(f"{str(path)!r} is a system directory; choose a directory of its own")
    try:
        exists, is_dir = path.exists(), path.is_dir()
    except OSError as exc:  # e.g. a name too long: refuse it here rather than crash
        raise ConfigError(f"{str(path)!r}: {exc.strerror or exc}") from None
    if exists and not is_dir:
        raise ConfigError(f"{str(path)!r} exists and is not a directory")
    return path


# Code points ZooKeeper refuses in a node name (org.apache.zookeeper.common.PathUtils.validatePath):
# NUL and the other control characters, the surrogates (Java's UTF-16 halves of any character beyond the
# Basic Multilingual Plane), the private-use area and the last specials of the BMP.
_ZK_FORBIDDEN = re.compile("[\\x00-\\x1f\\x7f-\\x9f\\ud800-\\uf8ff\\ufff0-\\uffff\\U00010000-\\U0010ffff]")
ZK_CHARACTERS = "U+0020-U+007E, U+00A0-U+D7FF and U+F900-U+FFEF"


def _zk_storable(text: str) -> bool:
    """True when ZooKeeper can hold ``text`` in a node name (not counting '/')."""
    return _ZK_FORBIDDEN.search(text) is None


def parse_zk_path(text: str) -> str:
    """An absolute ZooKeeper path below the root: no trailing slash, no empty, ``.`` or ``..``
    segments, and only characters ZooKeeper accepts (``ZK_CHARACTERS``)."""
    raw = text.strip()
    if not raw.startswith("/") or raw == "/":
        raise ConfigError(f"{text!r} must be an absolute ZooKeeper path below /, like /election")
    if raw.endswith("/") or "//" in raw or any(seg in (".", "..") for seg in raw.split("/")[1:]):
        raise ConfigError(f"{text!r} is not a valid ZooKeeper path")
    if not _zk_storable(raw):
        raise ConfigError(f"{text!r} has a character ZooKeeper refuses (allowed: {ZK_CHARACTERS})")
    return raw


def parse_election_path(text: str) -> str:
    """An absolute ZooKeeper path, not the root, without a trailing slash or empty segments."""
    return parse_zk_path(text)


IDENTITY_MAX = 253


def parse_identity(text: str) -> str:
    """A replica name that ZooKeeper can store in the member node's name (``m-<identity>-N``):
    1-253 printable characters of ``ZK_CHARACTERS``, without '/'."""
    raw = text.strip()
    if not raw:
        raise ConfigError("empty identity")
    if len(raw) > IDENTITY_MAX or "/" in raw or not raw.isprintable() or not _zk_storable(raw):
        raise ConfigError(
            f"{text!r} must be 1-{IDENTITY_MAX} printable characters without '/' in {ZK_CHARACTERS}"
            " (ZooKeeper refuses others in a node name)"
        )
    return raw


def parse_ordinals(text: str) -> frozenset[int]:
    """A comma-separated list of StatefulSet ordinals, decimal integers >= 0 (``2``, ``0,3``)."""
    items = [item.strip() for item in text.split(",")]
    if not all(items):
        raise ConfigError(f"{text!r} has an empty entry (expected ordinals like 2 or 0,3)")
    bad = [item for item in items if not re.fullmatch(r"[0-9]{1,9}", item)]
    if bad:
        raise ConfigError(f"{bad[0]!r} is not an ordinal (a whole number from 0, as in election-0)")
    return frozenset(int(item) for item in items)


def ordinal_of(identity: str) -> int | None:
    """The ordinal in a StatefulSet pod's name, ``<set>-<ordinal>`` (``election-2`` -> 2); None if
    the identity does not end that way."""
    match = re.fullmatch(r".+-([0-9]{1,9})", identity)
    return int(match.group(1)) if match else None


def no_lead_by_ordinal(identity: str, ordinals: frozenset[int]) -> bool:
    """True when this replica's ordinal is one of ``ordinals`` (the chart's ``noLead.ordinals``).

    Every pod of a StatefulSet gets the same environment; only its name (the identity) tells them
    apart, so the list is decided here, per replica. An identity without an ordinal is refused rather
    than read as "not listed": the list would then silently mean nothing."""
    ordinal = ordinal_of(identity)
    if ordinal is None:
        raise ConfigError(
            f"identity {identity!r} has no ordinal: the list needs a name ending in -<ordinal>, as a"
            " StatefulSet names its pods (election-2)"
        )
    return ordinal in ordinals


def parse_zk_auth(text: str) -> str:
    """Digest credentials ``user:password``; the message never repeats the text (it is a secret)."""
    user, sep, password = text.partition(":")
    if not sep or not user.strip() or not password:
        raise ConfigError("expected user:password (value not shown)")
    if any(c.isspace() for c in user) or not text.isprintable():
        raise ConfigError("user must have no spaces and the value printable characters (value not shown)")
    return text


def parse_readable_file(text: str) -> Path:
    """An existing, readable regular file (a certificate or key)."""
    if not text.strip():
        raise ConfigError("empty path")
    path = Path(os.path.expanduser(text))
    try:
        ok = path.is_file() and os.access(path, os.R_OK)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{text!r}: {exc}") from None
    if not ok:
        raise ConfigError(f"{text!r} is not a readable file")
    return path


def parse_command(text: str) -> tuple[str, ...]:
    """A command line split as a POSIX shell would (quotes, backslashes), without running a shell."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise ConfigError(f"cannot split {text!r}: {exc}") from None
    if not words:
        raise ConfigError("empty command")
    return tuple(words)


def check_command(command: tuple[str, ...]) -> tuple[str, ...]:
    """The command's program must be runnable now: an executable file, or a name found on PATH."""
    program = command[0]
    if "/" in program:
        if not (os.path.isfile(program) and os.access(program, os.X_OK)):
            raise ConfigError(f"{program!r} is not an executable file")
    elif shutil.which(program) is None:
        raise ConfigError(f"{program!r} is not found on PATH")
    return command


def check_exec_timing(stop_timeout: float, session_timeout: float, shutdown_timeout: float) -> None:
    """The command's stop grace must fit the lease (app.leases), and a graceful shutdown must have
    room for it: otherwise the SIGKILL could land after a successor started its own command."""
    bound = exec_grace_bound(lease_of(session_timeout))
    if stop_timeout > bound:
        most = f"at most {format_duration(round(bound, 3))}" if bound > 0 else "no grace fits"
        raise ConfigError(
            f"--exec-stop-timeout {format_duration(stop_timeout)} does not fit --zk-session-timeout"
            f" {format_duration(session_timeout)}: the SIGKILL must land inside the lease, so {most}"
            f" (4/9 of the session timeout less {KILL_MARGIN:g}s)"
        )
    if shutdown_timeout < stop_timeout + 1.0:
        raise ConfigError(
            f"--shutdown-timeout {format_duration(shutdown_timeout)} leaves no room to stop the command"
            f" (--exec-stop-timeout {format_duration(stop_timeout)}) and release the node: give it at"
            f" least {format_duration(stop_timeout + 1.0)}"
        )


@dataclass(frozen=True)
class TlsSettings:
    """TLS to ZooKeeper: the CA that signs the servers' certificates (None: the system's), and an
    optional client certificate and key for servers that ask for one."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None


def tls_settings(enabled: bool, ca: Path | None, cert: Path | None, key: Path | None) -> TlsSettings | None:
    """Combine the TLS flags; any of the files turns TLS on; a certificate needs its key."""
    if (cert is None) != (key is None):
        raise ConfigError("--zk-tls-cert and --zk-tls-key go together")
    if not (enabled or ca or cert):
        return None
    return TlsSettings(ca, cert, key)


LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("json", "text")


def default_identity() -> str:
    """The host name: a StatefulSet pod's name, so replicas differ without configuration."""
    return socket.gethostname() or "election"


@dataclass(frozen=True)
class Settings:
    """Everything one replica needs to run; built by the CLI, read by the wiring and the states."""

    zk_servers: tuple[HostPort, ...] = (HostPort("127.0.0.1", 2181),)
    leader_timeout: float = 10.0
    attempter_timeout: float = 10.0
    file_dir: Path = Path("/tmp/election")  # noqa: S108 - the assignment's own example default
    storage_capacity: int = 10
    zk_session_timeout: float = 10.0
    zk_connect_timeout: float = 10.0
    election_path: str = "/election"
    identity: str = field(default_factory=default_identity)
    http_address: HostPort = HostPort("0.0.0.0", 8080)  # noqa: S104 - a pod must be scraped from outside
    log_level: str = "info"
    log_format: str = "json"
    shutdown_timeout: float = 20.0
    failover_timeout: float = 60.0
    failover_backoff_max: float = 5.0
    max_write_failures: int = 3
    zk_auth: str | None = field(default=None, repr=False)
    zk_tls: TlsSettings | None = None
    # The ZooKeeper path every other path is relative to (the suffix of --zk-servers), or None.
    chroot: str | None = None
    # The leader's work: None writes files; a command (--exec) runs it as long as we lead.
    exec_command: tuple[str, ...] | None = None
    exec_stop_timeout: float = 3.0
    # Never a candidate (--no-lead): registers, reports and is visible, but never leads.
    no_lead: bool = False

    @property
    def zk_connect_string(self) -> str:
        """The servers and the chroot, as kazoo and ZooKeeper's own tools take them."""
        return ",".join(str(s) for s in self.zk_servers) + (self.chroot or "")

    @property
    def leader_node_path(self) -> str:
        return f"{self.election_path}/leader"
