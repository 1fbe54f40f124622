"""The command line: flags and ELECTION_* variables, the one-line exit-2 contract, help, version, status.

Exit statuses and one-line messages are checked on real ``python -m app`` processes (that is where a
stray traceback or a second line would show); the rest goes through click's test runner. Nothing here
starts ZooKeeper or a replica.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

import app.cli
import app.logs
import app.wiring
from app import __version__
from app.cli import cli, main
from app.config import HostPort, Settings
from app.status import ClusterView
from tests.app_cli import one_line
from tests.app_cli import run_app as election

EXIT_CONFIG = 2
EXIT_UNREACHABLE = 3


def assert_config_error(result: subprocess.CompletedProcess[str], names: str) -> None:
    one_line(result, EXIT_CONFIG, names)
    assert result.stdout == ""


def option_flag(param: click.Parameter) -> str:
    return max(param.opts, key=len)


def run_options() -> list[click.Option]:
    command = cli.commands["run"]
    return [p for p in command.params if isinstance(p, click.Option)]


def help_entries(output: str) -> dict[str, str]:
    """The Options section of a help page, as {longest flag: its entry joined into one line}."""
    entries: dict[str, str] = {}
    flag = ""
    for line in output.split("Options:", 1)[1].splitlines():
        if line.lstrip().startswith("-"):
            flag = max((word.rstrip(",") for word in line.split() if word.startswith("-")), key=len)
            entries[flag] = ""
        if flag:
            entries[flag] += " " + line.strip()
    return entries


# -- bad configuration: one line naming the setting, status 2 ---------------------------------


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--storage-capacity=0"], "--storage-capacity"),
        (["--storage-capacity=abc"], "--storage-capacity"),
        (["--storage-capacity=-1"], "--storage-capacity"),
        (["--leader-timeout=10x"], "--leader-timeout"),
        (["--leader-timeout=10"], "--leader-timeout"),
        (["--leader-timeout=0s"], "--leader-timeout"),
        (["--leader-timeout=-1s"], "--leader-timeout"),
        (["--attempter-timeout=1m30"], "--attempter-timeout"),
        (["--attempter-timeout=0s"], "--attempter-timeout"),
        (["--zk-session-timeout=-1s"], "--zk-session-timeout"),
        (["--shutdown-timeout=0"], "--shutdown-timeout"),
        (["--failover-timeout=forever"], "--failover-timeout"),
        (["--zk-servers="], "--zk-servers"),
        (["--zk-servers=zk:99999"], "--zk-servers"),
        (["--zk-servers=zk:abc"], "--zk-servers"),
        (["--zk-servers=zk-0:2181,,zk-1:2181"], "--zk-servers"),
        (["--file-dir=/"], "--file-dir"),
        (["--election-path=election"], "--election-path"),
        (["--identity=a/b"], "--identity"),
        (["--http-address=nowhere"], "--http-address"),
        (["--log-level=loud"], "--log-level"),
        (["--log-format=xml"], "--log-format"),
    ],
    ids=lambda value: value[0] if isinstance(value, list) else None,
)
def test_bad_flag_exits_2_with_one_line_naming_it(args: list[str], names: str) -> None:
    assert_config_error(election("run", *args), names)


def test_file_dir_that_is_a_file_exits_2_naming_it(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("not a directory")
    result = election("run", f"--file-dir={a_file}")
    assert_config_error(result, "--file-dir")
    assert "not a directory" in result.stderr


def test_unknown_flag_exits_2_with_one_line_naming_it() -> None:
    assert_config_error(election("run", "--no-such-flag"), "--no-such-flag")


def test_flag_without_its_value_exits_2_with_one_line_naming_it() -> None:
    assert_config_error(election("run", "--leader-timeout"), "--leader-timeout")


def test_unexpected_argument_exits_2_with_one_line() -> None:
    assert_config_error(election("run", "extra"), "extra")


def test_unknown_command_exits_2_with_one_line() -> None:
    assert_config_error(election("lead"), "lead")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ELECTION_STORAGE_CAPACITY", "0"),
        ("ELECTION_STORAGE_CAPACITY", "abc"),
        ("ELECTION_LEADER_TIMEOUT", "10x"),
        ("ELECTION_ATTEMPTER_TIMEOUT", "-1s"),
        ("ELECTION_ZK_SERVERS", " "),
        ("ELECTION_ZK_SERVERS", "zk:0"),
        ("ELECTION_LOG_FORMAT", "xml"),
    ],
)
def test_bad_env_var_exits_2_with_one_line_naming_the_variable(variable: str, value: str) -> None:
    assert_config_error(election("run", env={variable: value}), variable)


def test_env_var_error_also_names_its_flag() -> None:
    result = election("run", env={"ELECTION_STORAGE_CAPACITY": "0"})
    assert "--storage-capacity" in result.stderr


def test_env_var_file_dir_that_is_a_file_exits_2_naming_the_variable(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert_config_error(election("run", env={"ELECTION_FILE_DIR": str(a_file)}), "ELECTION_FILE_DIR")


def test_status_with_a_bad_timeout_exits_2_naming_it() -> None:
    assert_config_error(election("status", "--timeout=0s"), "--timeout")


def test_status_with_empty_zk_servers_exits_2_naming_it() -> None:
    assert_config_error(election("status", "--zk-servers="), "--zk-servers")


# -- help and version ------------------------------------------------------------------------


def test_help_exits_0() -> None:
    result = election("run", "--help")
    assert result.returncode == 0
    assert result.stderr == ""


@pytest.mark.parametrize("option", run_options(), ids=option_flag)
def test_run_help_lists_every_flag_with_its_env_var(option: click.Option) -> None:
    result = CliRunner().invoke(cli, ["run", "--help"])
    assert result.exit_code == 0
    assert f"env var: {option.envvar}" in help_entries(result.output)[option_flag(option)]


def test_status_help_lists_its_flags_with_their_env_vars() -> None:
    result = CliRunner().invoke(cli, ["status", "--help"])
    assert result.exit_code == 0
    entries = help_entries(result.output)
    for flag, variable in [
        ("--zk-servers", "ELECTION_ZK_SERVERS"),
        ("--election-path", "ELECTION_ELECTION_PATH"),
        ("--timeout", "ELECTION_TIMEOUT"),
    ]:
        assert f"env var: {variable}" in entries[flag]


def test_switchover_help_lists_its_flags_with_their_env_vars() -> None:
    result = CliRunner().invoke(cli, ["switchover", "--help"])
    assert result.exit_code == 0
    entries = help_entries(result.output)
    for flag, variable in [
        ("--zk-servers", "ELECTION_ZK_SERVERS"),
        ("--election-path", "ELECTION_ELECTION_PATH"),
        ("--zk-auth", "ELECTION_ZK_AUTH"),
        ("--to", "ELECTION_TO"),
        ("--wait", "ELECTION_WAIT"),
        ("--timeout", "ELECTION_TIMEOUT"),
    ]:
        assert f"env var: {variable}" in entries[flag]
    assert "default: 30s" in entries["--wait"] and "default: 5s" in entries["--timeout"]


def test_status_help_offers_the_history() -> None:
    result = CliRunner().invoke(cli, ["status", "--help"])
    assert "how long it lasted, why it ended" in help_entries(result.output)["--history"]


def test_top_level_help_lists_every_command() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    commands = [ln.split()[0] for ln in result.output.split("Commands:")[1].splitlines() if ln.strip()]
    assert commands == ["audit", "fence", "run", "status", "switchover"]


def test_version_prints_the_package_version_and_exits_0() -> None:
    result = election("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"election, version {__version__}"


# -- flags and env vars ----------------------------------------------------------------------


@pytest.mark.parametrize("option", run_options(), ids=option_flag)
def test_every_run_option_reads_the_env_var_named_after_its_flag(option: click.Option) -> None:
    flag = option_flag(option)
    assert flag.startswith("--")
    assert option.envvar == "ELECTION_" + flag[2:].upper().replace("-", "_")
    assert option.show_envvar


def test_run_has_the_five_settings_of_the_assignment() -> None:
    flags = {option_flag(o) for o in run_options()}
    assert {
        "--zk-servers",
        "--leader-timeout",
        "--attempter-timeout",
        "--file-dir",
        "--storage-capacity",
    } <= flags


class _Captured(Exception):
    def __init__(self, settings: Settings) -> None:
        super().__init__("captured")
        self.settings = settings


class _CapturingReplica:
    """Stands in for app.wiring.Replica: records the settings and stops before anything runs."""

    def __init__(self, settings: Settings, **_: Any) -> None:
        raise _Captured(settings)


@pytest.fixture
def capture_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(app.wiring, "Replica", _CapturingReplica)
    for name in list(os.environ):
        if name.startswith("ELECTION_"):
            monkeypatch.delenv(name)
    yield


def settings_of(args: list[str], env: dict[str, str] | None = None) -> Settings:
    result = CliRunner().invoke(cli, ["run", *args], env=env)
    assert isinstance(result.exception, _Captured), result.output
    return result.exception.settings


@pytest.mark.usefixtures("capture_settings")
def test_flags_become_settings(tmp_path: Path) -> None:
    settings = settings_of(
        [
            "--zk-servers=zk-0:2181,zk-1:2182",
            "--leader-timeout=1m30s",
            "--attempter-timeout=250ms",
            f"--file-dir={tmp_path}",
            "--storage-capacity=7",
            "--identity=replica-1",
            "--http-address=127.0.0.1:0",
        ]
    )
    assert settings.zk_servers == (HostPort("zk-0", 2181), HostPort("zk-1", 2182))
    assert settings.leader_timeout == 90.0
    assert settings.attempter_timeout == 0.25
    assert settings.file_dir == tmp_path
    assert settings.storage_capacity == 7
    assert settings.identity == "replica-1"
    assert settings.http_address == HostPort("127.0.0.1", 0)


@pytest.mark.usefixtures("capture_settings")
def test_env_vars_become_settings(tmp_path: Path) -> None:
    settings = settings_of(
        [],
        env={
            "ELECTION_ZK_SERVERS": "zk:2181",
            "ELECTION_LEADER_TIMEOUT": "2s",
            "ELECTION_FILE_DIR": str(tmp_path),
            "ELECTION_STORAGE_CAPACITY": "4",
            "ELECTION_LOG_FORMAT": "text",
        },
    )
    assert settings.zk_servers == (HostPort("zk", 2181),)
    assert settings.leader_timeout == 2.0
    assert settings.file_dir == tmp_path
    assert settings.storage_capacity == 4
    assert settings.log_format == "text"


@pytest.mark.usefixtures("capture_settings")
def test_flag_wins_over_env_var() -> None:
    settings = settings_of(["--storage-capacity=5"], env={"ELECTION_STORAGE_CAPACITY": "9"})
    assert settings.storage_capacity == 5


@pytest.mark.usefixtures("capture_settings")
def test_defaults_match_the_settings_defaults() -> None:
    settings = settings_of([])
    assert settings == Settings(identity=settings.identity)


@pytest.mark.usefixtures("capture_settings")
def test_identity_defaults_to_the_host_name() -> None:
    assert settings_of([]).identity == (socket.gethostname() or "election")


@pytest.mark.usefixtures("capture_settings")
@pytest.mark.parametrize(
    ("identity", "no_lead"), [("election-0", False), ("election-2", True), ("election-3", True)]
)
def test_no_lead_ordinals_make_exactly_the_listed_replicas_no_lead(identity: str, no_lead: bool) -> None:
    settings = settings_of([f"--identity={identity}"], env={"ELECTION_NO_LEAD_ORDINALS": "2,3"})
    assert settings.no_lead is no_lead


@pytest.mark.usefixtures("capture_settings")
def test_no_lead_wins_over_an_ordinal_list_that_does_not_name_the_replica() -> None:
    assert settings_of(["--identity=election-0", "--no-lead", "--no-lead-ordinals=2"]).no_lead is True
    assert settings_of(["--identity=election-0"]).no_lead is False


def test_no_lead_ordinals_with_an_identity_without_an_ordinal_exits_2_naming_both() -> None:
    result = election("run", "--identity=r2", "--no-lead-ordinals=2")
    assert_config_error(
        result, "--no-lead-ordinals (ELECTION_NO_LEAD_ORDINALS): identity 'r2' has no ordinal"
    )


def test_a_bad_no_lead_ordinals_variable_exits_2_naming_it() -> None:
    result = election("run", "--identity=election-1", env={"ELECTION_NO_LEAD_ORDINALS": "two"})
    assert_config_error(result, "ELECTION_NO_LEAD_ORDINALS")


# -- election status -------------------------------------------------------------------------

# Whether a command gives up after its --timeout is told apart from a wall-clock budget: the
# variable asks for 30 s and the flag for 500 ms, so a run that ignored the flag would take 30 s,
# while one that honours it takes 500 ms plus starting Python (seconds on a loaded machine).
SLOW_DEFAULT = {"ELECTION_TIMEOUT": "30s"}
HONOURED = 20.0


def test_status_against_unreachable_zookeeper_exits_3_with_one_line_within_its_timeout(
    closed_port: int,
) -> None:
    began = time.monotonic()
    result = election(
        "status", f"--zk-servers=127.0.0.1:{closed_port}", "--timeout=500ms", env=SLOW_DEFAULT, timeout=60
    )
    elapsed = time.monotonic() - began
    one_line(result, EXIT_UNREACHABLE, "unreachable", f"127.0.0.1:{closed_port}")
    assert result.stdout == ""
    assert elapsed < HONOURED  # the flag's 500 ms, not the variable's 30 s


def test_switchover_against_unreachable_zookeeper_exits_3_with_one_line_within_its_timeout(
    closed_port: int,
) -> None:
    began = time.monotonic()
    result = election(
        "switchover",
        "--to=r2",
        f"--zk-servers=127.0.0.1:{closed_port}",
        "--timeout=500ms",
        env=SLOW_DEFAULT,
        timeout=60,
    )
    elapsed = time.monotonic() - began
    assert one_line(result, EXIT_UNREACHABLE, "unreachable").startswith("election switchover: ")
    assert result.stdout == ""
    assert elapsed < HONOURED  # the flag's 500 ms, not the variable's 30 s


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--wait=0s"], "--wait"),
        (["--wait=soon"], "--wait"),
        (["--to="], "--to"),
        (["--zk-auth=nocolon"], "--zk-auth"),
        (["--timeout=0s"], "--timeout"),
    ],
)
def test_switchover_with_a_bad_flag_exits_2_naming_it(args: list[str], names: str) -> None:
    assert_config_error(election("switchover", *args), names)


# -- issue 9, item 11: bad input that used to slip through -----------------------------------


class _Reached(Exception):
    """Raised by a stand-in for what a command does after its settings are accepted."""


@pytest.fixture
def stop_after_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every command stops where it would start its work: accepted settings raise _Reached."""

    def reached(*_args: Any, **_kw: Any) -> Any:
        raise _Reached

    import app.audit  # noqa: PLC0415 - patched only here

    monkeypatch.setattr(app.wiring, "Replica", reached)
    monkeypatch.setattr(app.wiring, "make_coordinator", reached)
    monkeypatch.setattr(app.audit, "audit_directory", reached)
    for name in list(os.environ):
        if name.startswith("ELECTION_"):
            monkeypatch.delenv(name)


def main_exit(
    args: list[str], capsys: pytest.CaptureFixture[str], env: dict[str, str] | None = None
) -> tuple[int, list[str]]:
    """Run ``app.cli.main`` in this process; return its exit status and its stderr lines."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in (env or {}).items():
            patch.setenv(name, value)
        with pytest.raises(SystemExit) as exited:
            main(args)
    code = exited.value.code
    assert isinstance(code, int)
    return code, capsys.readouterr().err.splitlines()


def assert_one_line_exit_2(result: tuple[int, list[str]], *names: str) -> None:
    code, lines = result
    assert code == EXIT_CONFIG, lines
    assert len(lines) == 1, lines
    for name in names:
        assert name in lines[0], lines[0]


def env_options() -> list[tuple[str, str, str]]:
    """(command, flag, variable) for every option of every command that reads a variable."""
    return [
        (name, option_flag(param), param.envvar)
        for name, command in sorted(cli.commands.items())
        for param in command.params
        if isinstance(param, click.Option) and isinstance(param.envvar, str)
    ]


@pytest.mark.usefixtures("stop_after_parsing")
@pytest.mark.parametrize(("command", "flag", "variable"), env_options(), ids=str)
def test_an_empty_variable_exits_2_naming_it_instead_of_meaning_the_default(
    command: str, flag: str, variable: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert_one_line_exit_2(main_exit([command], capsys, env={variable: ""}), variable, flag, "empty")


@pytest.mark.usefixtures("stop_after_parsing")
def test_a_blank_boolean_variable_exits_2_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert_one_line_exit_2(
        main_exit(["run"], capsys, env={"ELECTION_ZK_TLS": "  "}), "ELECTION_ZK_TLS", "empty"
    )


@pytest.mark.usefixtures("stop_after_parsing")
def test_an_empty_variable_is_refused_unless_its_flag_is_given(capsys: pytest.CaptureFixture[str]) -> None:
    # The documented choice: a flag wins over its variable, whatever the variable holds, so an empty
    # variable is a mistake only where it would be read.
    empty = {"ELECTION_ZK_SERVERS": ""}
    assert_one_line_exit_2(main_exit(["run"], capsys, env=empty), "ELECTION_ZK_SERVERS")
    with pytest.MonkeyPatch.context() as patch, pytest.raises(_Reached):
        patch.setenv("ELECTION_ZK_SERVERS", "")
        main(["run", "--zk-servers=zk:2181"])


@pytest.mark.usefixtures("stop_after_parsing")
@pytest.mark.parametrize(
    "identity",
    ["replica-\U0001f600", "replica-\ufffd", "replica-\ufffc", "replica-\ufff9", "\U00010000"],
    ids=["emoji", "replacement-char", "object-replacement", "interlinear-anchor", "first-beyond-bmp"],
)
def test_an_identity_zookeeper_cannot_store_exits_2_saying_what_is_allowed(
    identity: str, capsys: pytest.CaptureFixture[str]
) -> None:
    result = main_exit(["run", f"--identity={identity}"], capsys)
    assert_one_line_exit_2(result, "--identity", "U+0020-U+007E, U+00A0-U+D7FF and U+F900-U+FFEF")


@pytest.mark.usefixtures("stop_after_parsing")
@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["run", "--zk-session-timeout=720h"], "--zk-session-timeout"),
        (["run", "--zk-session-timeout=596h31m23.648s"], "--zk-session-timeout"),
        (["status", "--timeout=720h"], "--timeout"),
    ],
    ids=lambda v: v[-1] if isinstance(v, list) else None,
)
def test_a_timeout_beyond_32_bit_milliseconds_exits_2_naming_it(
    args: list[str], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert_one_line_exit_2(main_exit(args, capsys), flag, "596h31m23.647s")
    with pytest.raises(_Reached):  # the longest that fits (2**31-1 ms) is accepted
        main([args[0], f"{flag}=596h31m23.647s"])


@pytest.mark.usefixtures("stop_after_parsing")
@pytest.mark.parametrize(
    "arg",
    ["--leader-timeout=9ms", "--leader-timeout=1ns", "--attempter-timeout=9999us", "--attempter-timeout=1ms"],
)
def test_a_period_below_10ms_exits_2_naming_it(arg: str, capsys: pytest.CaptureFixture[str]) -> None:
    flag = arg.split("=", maxsplit=1)[0]
    assert_one_line_exit_2(main_exit(["run", arg], capsys), flag, "10ms")
    with pytest.raises(_Reached):  # 10ms itself is accepted (the benchmarks run the leader at it)
        main(["run", f"{flag}=10ms"])


# -- issue 9, item 12: chroots -----------------------------------------------------------------


@pytest.mark.usefixtures("capture_settings")
def test_a_chroot_after_the_servers_is_accepted_and_kept_in_the_connect_string() -> None:
    settings = settings_of(["--zk-servers=zk1:2181,zk2:2181/apps/election"])
    assert settings.zk_servers == (HostPort("zk1", 2181), HostPort("zk2", 2181))
    assert settings.chroot == "/apps/election"
    assert settings.zk_connect_string == "zk1:2181,zk2:2181/apps/election"


@pytest.mark.usefixtures("capture_settings")
def test_a_chroot_from_the_variable_is_accepted() -> None:
    settings = settings_of([], env={"ELECTION_ZK_SERVERS": "zk:2181/apps"})
    assert (settings.zk_connect_string, settings.chroot) == ("zk:2181/apps", "/apps")


@pytest.mark.usefixtures("stop_after_parsing")
@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("zk1:2181/apps,zk2:2181", "chroot in the middle"),
        ("zk1:2181/apps/", "chroot '/apps/'"),
        ("zk1:2181/apps//election", "chroot"),
        ("zk1:2181/apps/../election", "chroot"),
        ("zk1:2181/apps/\ue000", "chroot"),
    ],
)
def test_a_bad_chroot_exits_2_naming_the_flag(
    value: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert_one_line_exit_2(main_exit(["run", f"--zk-servers={value}"], capsys), "--zk-servers", says)


def test_status_shows_the_chroot_in_text_and_json() -> None:
    view = ClusterView(election_path="/election", leader=None, members=[], chroot="/apps")
    assert json.loads(view.to_json())["chroot"] == "/apps"
    assert view.to_text().splitlines()[0] == "chroot:  /apps (leader node /apps/election/leader)"
    assert json.loads(ClusterView("/election", None, []).to_json())["chroot"] is None


# -- issue 13: the way out of `election run` -------------------------------------------------


class _Exited(Exception):
    """Raised by a stand-in for ``os._exit``, with the status it was given."""


def test_run_leaves_without_the_interpreters_teardown_once_the_logs_are_out(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Replica.run returns once everything is released; then the process leaves with os._exit (the
    # interpreter's teardown cost 35-50 ms of CPU at the successor's take-over), but only after the
    # last log line is written: a buffered handler is flushed and closed first.
    written: list[str] = []

    class Buffered(logging.Handler):
        def __init__(self) -> None:
            super().__init__()
            self.pending: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.pending.append(record.getMessage())

        def flush(self) -> None:
            written.extend(self.pending)
            self.pending.clear()

    class Returning:
        def __init__(self, *_args: Any, **_kw: Any) -> None:
            self.machine = None

        def bind_http(self) -> None: ...

        def install_signal_handlers(self) -> None: ...

        def run(self) -> int:
            logging.getLogger("election.states.stopping").warning("released ZooKeeper session")
            return 3

    def exit_now(status: int) -> None:
        raise _Exited(status)

    buffered = Buffered()
    monkeypatch.setattr(app.wiring, "Replica", Returning)
    monkeypatch.setattr(app.logs, "configure", lambda **_kw: logging.getLogger().addHandler(buffered))
    monkeypatch.setattr(app.cli.os, "_exit", exit_now)
    for name in list(os.environ):
        if name.startswith("ELECTION_"):
            monkeypatch.delenv(name)
    try:
        with pytest.raises(_Exited) as exited:
            main(["run", "--zk-servers=zk:2181", f"--file-dir={tmp_path}"])
    finally:
        logging.getLogger().removeHandler(buffered)
    assert exited.value.args == (3,)
    assert written == ["released ZooKeeper session"]
