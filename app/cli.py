"""The ``election`` command line: ``run``, ``status``, ``switchover``, ``audit`` and ``fence``.

Every flag also reads ``ELECTION_<FLAG>`` (``--some-flag`` -> ``ELECTION_SOME_FLAG``); a flag given on
the command line wins over the variable.

Exit statuses:

=====  =======================================================================================
0      ``run``: stopped by SIGTERM/SIGINT and released everything; ``status``: a leader exists;
       ``switchover``: the target (without ``--to``: a new leader) leads in a new term
1      ``run``: could not heal within ``--failover-timeout``, or shutdown exceeded
       ``--shutdown-timeout``; ``status``: nobody leads; ``audit``: a violation was found;
       ``fence``: the fence could not be taken or read (busy lock, I/O error, corrupt record);
       ``switchover``: nobody leads, another request is pending, another replica took over, or no
       hand-over within ``--wait`` (the request is then withdrawn)
2      bad configuration or usage (one line on stderr names the setting); ``switchover``: ``--to``
       names no connected member, the leader itself or a ``--no-lead`` member, without ``--to`` no
       member but the leader may lead, or ZooKeeper refused the request for want of ``--zk-auth``
       (nothing was handed over)
3      ``status``, ``switchover``: ZooKeeper unreachable (or failing); ``fence``: a newer epoch has
       written (nothing was run)
130    ``run``: a second SIGINT during shutdown (143 for a second SIGTERM); ``switchover``:
       interrupted while waiting (the request is withdrawn)
=====  =======================================================================================
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from click.core import ParameterSource

from app import __version__
from app.config import (
    LOG_FORMATS,
    LOG_LEVELS,
    ConfigError,
    Settings,
    TlsSettings,
    ZkConnect,
    check_command,
    check_exec_timing,
    default_identity,
    env_var,
    no_lead_by_ordinal,
    parse_command,
    parse_election_path,
    parse_file_dir,
    parse_host_port,
    parse_identity,
    parse_ordinals,
    parse_period,
    parse_positive_duration,
    parse_positive_int,
    parse_readable_file,
    parse_zk_auth,
    parse_zk_connect,
    parse_zk_timeout,
    tls_settings,
)
from app.durations import format_duration
from app.fence_cmd import parse_epoch, parse_fence_dir

EXIT_CONFIG = 2
EXIT_NO_LEADER = 1
EXIT_UNREACHABLE = 3
EXIT_AUDIT_FAILED = 1
EXIT_HANDOVER_FAILED = 1

F = TypeVar("F", bound=Callable[..., Any])


class _Parsed(click.ParamType[Any, Any]):
    """A click type backed by one of ``app.config``'s parsers."""

    def __init__(self, name: str, parse: Callable[[str], Any]) -> None:
        self.name = name
        self._parse = parse

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value  # a default that is already parsed
        try:
            return self._parse(value)
        except ConfigError as exc:
            self.fail(str(exc), param, ctx)


DURATION = _Parsed("duration", parse_positive_duration)
PERIOD = _Parsed("duration", parse_period)
ZK_TIMEOUT = _Parsed("duration", parse_zk_timeout)
POSITIVE_INT = _Parsed("integer", parse_positive_int)
ZK_SERVERS = _Parsed("host:port,...[/chroot]", parse_zk_connect)
DIRECTORY = _Parsed("directory", parse_file_dir)
ZK_PATH = _Parsed("zk-path", parse_election_path)
IDENTITY = _Parsed("name", parse_identity)
ZK_AUTH = _Parsed("user:password", parse_zk_auth)
READABLE_FILE = _Parsed("file", parse_readable_file)
COMMAND = _Parsed("command", parse_command)
ORDINALS = _Parsed("ordinal,...", parse_ordinals)
LISTEN = _Parsed("host:port", lambda text: parse_host_port(text, allow_empty_host=True, allow_port_zero=True))

_DEFAULTS = Settings(identity="")


class _EmptyVariable(click.BadParameter):
    """An ``ELECTION_*`` variable that is set but empty, where the value would have been read."""


class _Option(click.Option):
    """An option whose variable, when set but empty, is a mistake rather than "unset".

    click reads an empty variable as unset, so ``ELECTION_ZK_SERVERS=""`` (say, a ConfigMap key left
    blank) would silently run against the default. The variable is consulted only when the flag is
    not on the command line: a flag still wins over the variable, whatever the variable holds.
    """

    def resolve_envvar_value(self, ctx: click.Context) -> str | None:
        if isinstance(self.envvar, str) and self.envvar in os.environ and not os.environ[self.envvar].strip():
            raise _EmptyVariable(
                "is set but empty; unset it to use the default, or give it a value", ctx=ctx, param=self
            )
        return super().resolve_envvar_value(ctx)


def _option(flag: str, type_: Any, default: Any, help_: str, **kw: Any) -> Callable[[F], F]:
    name = kw.pop("param_name", None)  # the Python name when the flag's own would be a keyword
    return click.option(
        *((flag,) if name is None else (flag, name)),
        cls=_Option,
        type=type_,
        default=default,
        envvar=env_var(flag),
        show_envvar=True,
        show_default=kw.pop("show_default", True),
        help=help_,
        **kw,
    )


def _optional(flag: str, type_: Any, help_: str) -> Callable[[F], F]:
    """An option that is unset unless given (no default to show)."""
    return _option(flag, type_, None, help_, show_default=False)


def _flag(flag: str, help_: str) -> Callable[[F], F]:
    """A boolean flag that also reads its ``ELECTION_*`` variable (true/false, 1/0, yes/no...)."""
    return click.option(
        flag, cls=_Option, is_flag=True, default=False, envvar=env_var(flag), show_envvar=True, help=help_
    )


def _d(seconds: float) -> str:
    return format_duration(seconds)


def _zk_options(func: F) -> F:
    func = _optional(
        "--zk-tls-key",
        READABLE_FILE,
        "Private key (PEM) of the client certificate.",
    )(func)
    func = _optional(
        "--zk-tls-cert",
        READABLE_FILE,
        "Client certificate (PEM) for servers that ask for one; needs --zk-tls-key.",
    )(func)
    func = _optional(
        "--zk-tls-ca",
        READABLE_FILE,
        "CA certificate (PEM) that signs the servers' certificates; implies --zk-tls.",
    )(func)
    func = _flag(
        "--zk-tls", "Talk to ZooKeeper over TLS, verifying its certificates (system CAs unless --zk-tls-ca)."
    )(func)
    func = _option(
        "--election-path",
        ZK_PATH,
        _DEFAULTS.election_path,
        "ZooKeeper path under which the leader node and members live.",
    )(func)
    return _option(
        "--zk-servers",
        ZK_SERVERS,
        _DEFAULTS.zk_connect_string,
        "ZooKeeper servers, comma-separated host:port, optionally followed by a chroot (/apps/election).",
    )(func)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="election")
def cli() -> None:
    """Leader election over a ZooKeeper ephemeral node; the leader writes a file every leader-timeout,
    or runs your command (run --exec)."""


@cli.command(context_settings={"allow_interspersed_args": False})
@_zk_options
@_option(
    "--leader-timeout",
    PERIOD,
    _d(_DEFAULTS.leader_timeout),
    "How often the leader writes a file (at least 10ms).",
)
@_option(
    "--attempter-timeout",
    PERIOD,
    _d(_DEFAULTS.attempter_timeout),
    "How often a non-leader tries to become leader (at least 10ms; it reacts at once to the leader leaving).",
)
@_option("--file-dir", DIRECTORY, str(_DEFAULTS.file_dir), "Directory the leader writes its files into.")
@_option(
    "--storage-capacity",
    POSITIVE_INT,
    str(_DEFAULTS.storage_capacity),
    "Most of our files kept in --file-dir; older ones are deleted.",
)
@_option(
    "--zk-session-timeout",
    ZK_TIMEOUT,
    _d(_DEFAULTS.zk_session_timeout),
    "ZooKeeper session timeout: how long a dead leader holds the node.",
)
@_option(
    "--zk-connect-timeout",
    DURATION,
    _d(_DEFAULTS.zk_connect_timeout),
    "How long Init waits for ZooKeeper before going to Failover.",
)
@_optional("--identity", IDENTITY, "Name of this replica.  [default: the host name]")
@_option(
    "--http-address",
    LISTEN,
    str(_DEFAULTS.http_address),
    "Where to serve /metrics, /healthz, /readyz and /status (port 0: any free port).",
)
@_option("--log-level", click.Choice(LOG_LEVELS, case_sensitive=False), _DEFAULTS.log_level, "Log level.")
@_option(
    "--log-format",
    click.Choice(LOG_FORMATS, case_sensitive=False),
    _DEFAULTS.log_format,
    "json: one JSON object per line; text: for humans.",
)
@_option(
    "--shutdown-timeout",
    DURATION,
    _d(_DEFAULTS.shutdown_timeout),
    "Longest a graceful shutdown may take before the process exits anyway (status 1).",
)
@_option(
    "--failover-timeout",
    DURATION,
    _d(_DEFAULTS.failover_timeout),
    "Longest a replica may fail to heal before it exits (status 1) for its orchestrator to restart it.",
)
@_option(
    "--failover-backoff-max",
    DURATION,
    _d(_DEFAULTS.failover_backoff_max),
    "Cap of the exponential backoff between reconnection and retry attempts.",
)
@_option(
    "--max-write-failures",
    POSITIVE_INT,
    str(_DEFAULTS.max_write_failures),
    "Consecutive failed writes after which the leader resigns so that another replica can lead.",
)
@_optional(
    "--zk-auth",
    ZK_AUTH,
    "ZooKeeper digest credentials user:password; nodes are then created writable only with them.",
)
@_optional(
    "--no-lead-ordinals",
    ORDINALS,
    "As --no-lead, on the replicas whose identity ends in one of these ordinals (2 or 0,3: the"
    " chart's noLead.ordinals, which every pod of its StatefulSet gets).",
)
@_option(
    "--exec",
    COMMAND,
    None,
    "Run this command (split like a shell would, no shell run) as the leader's work instead of writing"
    " files: started when leading, stopped inside the lease. Or give it after --.",
    show_default=False,
    param_name="exec_text",
)
@_option(
    "--exec-stop-timeout",
    DURATION,
    _d(_DEFAULTS.exec_stop_timeout),
    "With --exec: grace between SIGTERM and SIGKILL of the command's process group (must fit 4/9 of the"
    " session timeout less 0.25s).",
)
@_flag("--no-lead", "Never become a candidate: register, report and show in status, but never lead.")
@click.argument("command", nargs=-1, type=click.UNPROCESSED, metavar="[-- COMMAND [ARGS]...]")
def run(**options: Any) -> None:
    """Run one replica until SIGTERM or SIGINT; the leader writes files, or runs COMMAND (--exec)."""
    from app import logs  # noqa: PLC0415 - keep `election --help` and `status` light
    from app.wiring import Replica  # noqa: PLC0415

    tls = _tls(
        options.pop("zk_tls"), options.pop("zk_tls_ca"), options.pop("zk_tls_cert"), options.pop("zk_tls_key")
    )
    connect: ZkConnect = options.pop("zk_servers")
    identity = options.pop("identity") or default_identity()
    exec_command = _exec_command(options.pop("exec_text"), options.pop("command"))
    no_lead_ordinals: frozenset[int] | None = options.pop("no_lead_ordinals")
    if no_lead_ordinals is not None:
        try:
            options["no_lead"] = options["no_lead"] or no_lead_by_ordinal(identity, no_lead_ordinals)
        except ConfigError as exc:
            _config_error(f"--no-lead-ordinals ({env_var('--no-lead-ordinals')}): {exc}")
    if exec_command is not None:
        try:
            check_exec_timing(
                options["exec_stop_timeout"], options["zk_session_timeout"], options["shutdown_timeout"]
            )
        except ConfigError as exc:
            _config_error(str(exc))
    settings = Settings(
        **options,
        zk_servers=connect.servers,
        chroot=connect.chroot,
        identity=identity,
        zk_tls=tls,
        exec_command=exec_command,
    )
    replica = Replica(settings)
    logs.configure(
        level=settings.log_level,
        fmt=settings.log_format,
        identity=settings.identity,
        election_path=settings.election_path,
        state=lambda: str(replica.machine.state),
    )
    try:
        replica.bind_http()
    except OSError as exc:
        _config_error(
            f"--http-address ({env_var('--http-address')}): cannot listen on "
            f"{settings.http_address}: {exc.strerror or exc}"
        )
    replica.install_signal_handlers()
    _leave(replica.run())


def _leave(status: int) -> NoReturn:
    """Exit with ``status`` once the replica has released everything (Replica.run returns after
    its work stopped, its session closed and its HTTP port closed): flush and close the logs and
    the standard streams, then leave without the interpreter's teardown (modules, objects, GC).
    That teardown cost 35-50 ms of CPU and as long in wall time on the 2-vCPU machine of
    docs/BENCHMARKS.md, at the very moment the successor takes over, often on the same machine;
    nothing of ours runs in it (no atexit handler, no buffered data once flushed)."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed or broken pipe: nothing more to say
            stream.flush()
    os._exit(status)


@cli.command()
@_zk_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (one per change with --watch).")
@click.option("--watch", is_flag=True, help="Keep printing the view whenever it changes, until interrupted.")
@click.option(
    "--history",
    is_flag=True,
    help="Also show the last terms: epoch, leader, when it began, how long it lasted, why it ended.",
)
@_option("--timeout", ZK_TIMEOUT, "5s", "How long to wait for ZooKeeper.")
def status(
    zk_servers: ZkConnect,
    election_path: str,
    zk_tls: bool,
    zk_tls_ca: Path | None,
    zk_tls_cert: Path | None,
    zk_tls_key: Path | None,
    as_json: bool,
    watch: bool,
    history: bool,
    timeout: float,
) -> None:
    """Show who leads now (identity, since, epoch) and which replicas are connected."""
    from app.ports.coordination import CoordinationError  # noqa: PLC0415
    from app.status import ClusterView, read_view  # noqa: PLC0415
    from app.wiring import make_coordinator  # noqa: PLC0415

    # No logging is set up for this one-shot command, so kazoo's warning about every failed connection
    # attempt would reach stderr through logging's last resort; the outcome is reported in one line.
    logging.getLogger("election").addHandler(logging.NullHandler())
    settings = Settings(
        zk_servers=zk_servers.servers,
        chroot=zk_servers.chroot,
        election_path=election_path,
        identity="status",
        zk_session_timeout=max(timeout, 4.0),
        zk_tls=_tls(zk_tls, zk_tls_ca, zk_tls_cert, zk_tls_key),
    )
    coordinator = make_coordinator(settings)
    changed = threading.Event()
    coordinator.subscribe(changed.set)

    def look(*, watch: bool) -> ClusterView:
        now = datetime.now(UTC) if history else None
        return read_view(coordinator, election_path, watch=watch, chroot=settings.chroot, history_now=now)

    try:
        coordinator.connect(timeout)
        view = look(watch=watch)
        click.echo(view.to_json() if as_json else view.to_text())
        while watch:
            changed.wait(1.0)  # the leader watch wakes us at once; members are polled each second
            changed.clear()
            latest = look(watch=True)
            if not latest.same_as(view):
                view = latest
                click.echo(view.to_json() if as_json else "\n" + view.to_text())
    except CoordinationError as exc:
        click.echo(f"election status: {exc}", err=True)
        sys.exit(EXIT_UNREACHABLE)
    except KeyboardInterrupt:
        sys.exit(0)
    finally:
        coordinator.close()
    sys.exit(0 if view.leader is not None else EXIT_NO_LEADER)


@cli.command()
@_zk_options
@_optional(
    "--to",
    IDENTITY,
    "Identity of the connected replica that should lead next.  [default: the next in the queue]",
)
@_option(
    "--wait",
    DURATION,
    "30s",
    "Longest to wait for the new leader; the request is withdrawn after it (status 1).",
)
@_optional(
    "--zk-auth",
    ZK_AUTH,
    "ZooKeeper digest credentials user:password: the replicas' own, when they run with --zk-auth.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of one line.")
@_option("--timeout", ZK_TIMEOUT, "5s", "How long to wait for ZooKeeper.")
def switchover(
    zk_servers: ZkConnect,
    election_path: str,
    zk_tls: bool,
    zk_tls_ca: Path | None,
    zk_tls_cert: Path | None,
    zk_tls_key: Path | None,
    to: str | None,
    wait: float,
    zk_auth: str | None,
    as_json: bool,
    timeout: float,
) -> None:
    """Ask the leader to hand over (to --to, or to the next in the queue) and wait until a new leader
    leads; print who led, who leads now and how long the hand-over took."""
    from app import switchover as planned  # noqa: PLC0415
    from app.adapters.system_clock import SystemClock  # noqa: PLC0415
    from app.ports.coordination import CoordinationError  # noqa: PLC0415
    from app.wiring import make_coordinator  # noqa: PLC0415

    logging.getLogger("election").addHandler(logging.NullHandler())  # as in status: one line, no noise
    settings = Settings(
        zk_servers=zk_servers.servers,
        chroot=zk_servers.chroot,
        election_path=election_path,
        identity="switchover",
        zk_session_timeout=max(timeout, 4.0),
        zk_auth=zk_auth,
        zk_tls=_tls(zk_tls, zk_tls_ca, zk_tls_cert, zk_tls_key),
    )
    coordinator = make_coordinator(settings)
    try:
        coordinator.connect(timeout)
        result = planned.switchover(coordinator, SystemClock(), to=to, wait=wait)
    except CoordinationError as exc:
        click.echo(f"election switchover: {exc}", err=True)
        sys.exit(EXIT_UNREACHABLE)
    except KeyboardInterrupt:
        click.echo("election switchover: interrupted; a request already written was withdrawn", err=True)
        sys.exit(130)
    finally:
        coordinator.close()
    if as_json:
        click.echo(result.to_json())
    elif result.ok:
        click.echo(result.to_text())
    if not result.ok:
        click.echo(f"election switchover: {result.message}", err=True)
    sys.exit(_SWITCHOVER_EXIT[result.outcome])


_SWITCHOVER_EXIT = {
    "switched": 0,
    "refused": EXIT_CONFIG,
    "denied": EXIT_CONFIG,
    "no-leader": EXIT_NO_LEADER,
    "busy": EXIT_HANDOVER_FAILED,
    "other-leader": EXIT_HANDOVER_FAILED,
    "timed-out": EXIT_HANDOVER_FAILED,
}


@cli.command()
@_option("--file-dir", DIRECTORY, str(_DEFAULTS.file_dir), "Directory to check.")
@_optional(
    "--storage-capacity",
    POSITIVE_INT,
    "Also check that no more than this many leader files are present.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a summary.")
def audit(file_dir: Path, storage_capacity: int | None, as_json: bool) -> None:
    """Check a file-dir: files parse, epochs never decrease in write order, sequences increase
    within an epoch, no leftovers of interrupted writes, capacity respected. Exit 1 on any violation."""
    from app.audit import audit_directory  # noqa: PLC0415

    try:
        report = audit_directory(file_dir, storage_capacity)
    except OSError as exc:
        _config_error(f"invalid --file-dir: cannot read {str(file_dir)!r}: {exc.strerror or exc}")
    click.echo(report.to_json() if as_json else report.to_text())
    sys.exit(0 if report.ok else EXIT_AUDIT_FAILED)


@cli.command(context_settings={"allow_interspersed_args": False})
@click.option(
    "--dir",
    "directory",
    type=_Parsed("directory", parse_fence_dir),
    help="Existing directory whose fence to check (.election-fence and its lock).  [required]",
)
@_optional(
    "--epoch",
    _Parsed("integer", parse_epoch),
    "This term's fencing token; `election run --exec` gives its command ELECTION_EPOCH.",
)
@click.option(
    "--lock-timeout",
    type=DURATION,
    default="10s",
    show_default=True,
    help="Longest to wait for the fence lock (held by another writer) before giving up (status 1).",
)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def fence(directory: Path | None, epoch: int | None, lock_timeout: float, command: tuple[str, ...]) -> None:
    """Exit 0 if no newer epoch than --epoch has written to --dir (recording it), 3 if one has.

    With `-- COMMAND ARGS...`, run the command while holding the fence lock and exit with its status:
    no writer of a newer epoch can interleave with it. Without, the check is over when this exits.
    """
    from app import fence_cmd  # noqa: PLC0415
    from app.ports.storage import StorageError  # noqa: PLC0415

    # Checked here rather than by click, whose message for a missing option is not one of ours.
    if directory is None:
        _config_error("no --dir: give the directory whose fence to check")
    if epoch is None:
        _config_error("no epoch: give --epoch or set ELECTION_EPOCH (election run --exec sets it)")
    if command and shutil.which(command[0]) is None:
        _config_error(f"command not found: {command[0]!r}")

    def refused(verdict: fence_cmd.Verdict) -> None:
        click.echo(f"election fence: {verdict.refusal(directory)}", err=True)

    try:
        if command:
            sys.exit(fence_cmd.run_fenced(directory, epoch, command, lock_timeout, refused=refused))
        verdict = fence_cmd.check(directory, epoch, lock_timeout)
    except StorageError as exc:
        click.echo(f"election fence: {exc}", err=True)
        sys.exit(1)
    except OSError as exc:
        _config_error(f"cannot run {command[0]!r}: {exc.strerror or exc}")
    if not verdict.allowed:
        refused(verdict)
        sys.exit(fence_cmd.EXIT_FENCED)
    sys.exit(0)


def _tls(enabled: bool, ca: Path | None, cert: Path | None, key: Path | None) -> TlsSettings | None:
    try:
        return tls_settings(enabled, ca, cert, key)
    except ConfigError as exc:
        _config_error(str(exc))


def _exec_command(text_form: tuple[str, ...] | None, argv_form: tuple[str, ...]) -> tuple[str, ...] | None:
    """The command of --exec / ELECTION_EXEC, or the one after ``--``; exactly one of them, or none."""
    if text_form is not None and argv_form:
        _config_error(f"the command is given twice: --exec ({env_var('--exec')}) and after --; give it once")
    command = text_form or argv_form or None
    if command is None:
        return None
    try:
        return check_command(tuple(command))
    except ConfigError as exc:
        source = "the command after --" if argv_form else f"--exec ({env_var('--exec')})"
        _config_error(f"{source}: {exc}")


def _config_error(message: str) -> NoReturn:
    click.echo(f"election: error: {message}", err=True)
    sys.exit(EXIT_CONFIG)


def _describe(param: click.Parameter | None, ctx: click.Context | None, *, from_env: bool = False) -> str:
    if param is None or not isinstance(param, click.Option):
        return ""
    flag = max(param.opts, key=len)
    if from_env or (
        ctx is not None and param.name and ctx.get_parameter_source(param.name) is ParameterSource.ENVIRONMENT
    ):
        return f"{param.envvar} (for {flag})"
    return flag


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the click group and turn usage errors into one line and exit status 2."""
    try:
        result = cli.main(args=argv, prog_name="election", standalone_mode=False)
    except click.BadParameter as exc:
        where = _describe(exc.param, exc.ctx, from_env=isinstance(exc, _EmptyVariable))
        _config_error(f"invalid {where}: {exc.message}" if where else exc.format_message())
    except click.UsageError as exc:
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
        _config_error(" ".join(exc.format_message().split()) + hint)
    except click.Abort:
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    if isinstance(result, int):
        sys.exit(result)


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
