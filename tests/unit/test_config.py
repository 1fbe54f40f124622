"""The configuration parsers: each turns flag/env text into a value or refuses it with ConfigError."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.config import (
    MAX_DURATION_SECONDS,
    ConfigError,
    HostPort,
    Settings,
    env_var,
    no_lead_by_ordinal,
    ordinal_of,
    parse_election_path,
    parse_file_dir,
    parse_host_port,
    parse_identity,
    parse_ordinals,
    parse_period,
    parse_positive_duration,
    parse_positive_int,
    parse_zk_connect,
    parse_zk_servers,
    parse_zk_timeout,
)

# -- env var names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "variable"),
    [
        ("--zk-servers", "ELECTION_ZK_SERVERS"),
        ("--storage-capacity", "ELECTION_STORAGE_CAPACITY"),
        ("--failover-backoff-max", "ELECTION_FAILOVER_BACKOFF_MAX"),
        ("--identity", "ELECTION_IDENTITY"),
    ],
)
def test_env_var_is_prefix_plus_flag_upper_cased_with_underscores(flag: str, variable: str) -> None:
    assert env_var(flag) == variable


# -- ZooKeeper servers -----------------------------------------------------------------------


def test_zk_servers_parses_a_comma_separated_list_in_order() -> None:
    assert parse_zk_servers("foo1.bar:2181,foo2.bar:2182") == (
        HostPort("foo1.bar", 2181),
        HostPort("foo2.bar", 2182),
    )


def test_zk_servers_ignores_spaces_around_entries() -> None:
    assert parse_zk_servers(" zk-0:2181 , zk-1:2181 ") == (HostPort("zk-0", 2181), HostPort("zk-1", 2181))


def test_zk_servers_accepts_a_bracketed_ipv6_address() -> None:
    assert parse_zk_servers("[::1]:2181") == (HostPort("::1", 2181),)


def test_ipv6_host_port_prints_with_brackets_again() -> None:
    assert str(parse_host_port("[::1]:2181")) == "[::1]:2181"


def test_connect_string_joins_the_servers_as_kazoo_takes_them() -> None:
    settings = Settings(zk_servers=parse_zk_servers("a:1,[::1]:2"), identity="x")
    assert settings.zk_connect_string == "a:1,[::1]:2"


@pytest.mark.parametrize("text", ["", " ", ","])
def test_zk_servers_refuses_an_empty_list(text: str) -> None:
    with pytest.raises(ConfigError, match="no ZooKeeper server"):
        parse_zk_servers(text)


@pytest.mark.parametrize("text", ["a:1,,b:2", "a:1,", ",a:1"])
def test_zk_servers_refuses_an_empty_entry(text: str) -> None:
    with pytest.raises(ConfigError, match="empty entry"):
        parse_zk_servers(text)


@pytest.mark.parametrize(
    "text",
    ["zk:abc", "zk:", "zk:-1", "zk:21 81", "zk:²", "zk:2181x", "zk:+2181"],
)
def test_zk_servers_refuses_a_bad_port(text: str) -> None:
    with pytest.raises(ConfigError, match="bad port"):
        parse_zk_servers(text)


@pytest.mark.parametrize("text", ["zk:0", "zk:70000", "zk:65536"])
def test_zk_servers_refuses_a_port_out_of_range(text: str) -> None:
    with pytest.raises(ConfigError, match="out of range"):
        parse_zk_servers(text)


def test_zk_servers_accepts_the_highest_port() -> None:
    assert parse_zk_servers("zk:65535") == (HostPort("zk", 65535),)


def test_zk_servers_refuses_an_entry_without_a_port() -> None:
    with pytest.raises(ConfigError, match="no port"):
        parse_zk_servers("zk")


def test_zk_servers_refuses_an_entry_without_a_host() -> None:
    with pytest.raises(ConfigError, match="no host"):
        parse_zk_servers(":2181")


def test_zk_servers_refuses_an_unbracketed_ipv6_address() -> None:
    with pytest.raises(ConfigError, match=r"\[addr\]:port"):
        parse_zk_servers("::1:2181")


@pytest.mark.parametrize("text", ["[::1]", "[::1:2181", "[::1]2181"])
def test_zk_servers_refuses_a_malformed_bracketed_address(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_zk_servers(text)


def test_zk_servers_refuses_a_host_with_invalid_characters() -> None:
    with pytest.raises(ConfigError, match="invalid host"):
        parse_zk_servers("zk/0:2181")


def test_zk_servers_error_names_the_bad_entry() -> None:
    with pytest.raises(ConfigError, match="'b:x'"):
        parse_zk_servers("a:1,b:x")


# -- listen address --------------------------------------------------------------------------


def test_listen_address_may_have_an_empty_host_and_port_zero() -> None:
    assert parse_host_port(":0", allow_empty_host=True, allow_port_zero=True) == HostPort("", 0)


def test_host_port_refuses_port_zero_unless_allowed() -> None:
    with pytest.raises(ConfigError, match="out of range 1-65535"):
        parse_host_port("127.0.0.1:0")


# -- durations -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"), [("10s", 10.0), ("1m30s", 90.0), ("250ms", 0.25), ("1ns", 1e-9)]
)
def test_positive_duration_parses_go_durations(text: str, seconds: float) -> None:
    assert parse_positive_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["0", "0s", "0ms", "-1s", "-0s"])
def test_positive_duration_refuses_zero_and_negative(text: str) -> None:
    with pytest.raises(ConfigError, match="must be a positive duration"):
        parse_positive_duration(text)


@pytest.mark.parametrize("text", ["", "10", "s", "10x", "1m30"])
def test_positive_duration_refuses_malformed_text(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_positive_duration(text)


def test_positive_duration_accepts_gos_longest_duration() -> None:
    assert parse_positive_duration("2562047h47m16s") <= MAX_DURATION_SECONDS


@pytest.mark.parametrize("text", ["2562048h", "9" * 400 + "s"])
def test_positive_duration_refuses_more_than_go_can_hold(text: str) -> None:
    with pytest.raises(ConfigError, match="longest duration"):
        parse_positive_duration(text)


# -- positive integers -----------------------------------------------------------------------


@pytest.mark.parametrize(("text", "value"), [("1", 1), ("10", 10), (" 7 ", 7), ("+3", 3), ("007", 7)])
def test_positive_int_parses_decimal_integers(text: str, value: int) -> None:
    assert parse_positive_int(text) == value


def test_positive_int_refuses_zero() -> None:
    with pytest.raises(ConfigError, match="at least 1"):
        parse_positive_int("0")


@pytest.mark.parametrize("text", ["-1", "abc", "1.5", "", "1e3", "0x10", "٣", "1 0"])
def test_positive_int_refuses_what_is_not_a_positive_integer(text: str) -> None:
    with pytest.raises(ConfigError, match="not a positive integer"):
        parse_positive_int(text)


def test_positive_int_refuses_an_absurdly_long_number() -> None:
    with pytest.raises(ConfigError, match="too large"):
        parse_positive_int("9" * 5000)


# -- file dir --------------------------------------------------------------------------------


def test_file_dir_may_be_missing(tmp_path: Path) -> None:
    missing = tmp_path / "not" / "yet"
    assert parse_file_dir(str(missing)) == missing
    assert not missing.exists()  # parsing does not create it: Init does


def test_file_dir_accepts_an_existing_directory(tmp_path: Path) -> None:
    assert parse_file_dir(str(tmp_path)) == tmp_path


def test_file_dir_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert parse_file_dir("out") == tmp_path / "out"


def test_file_dir_refuses_an_existing_file(tmp_path: Path) -> None:
    a_file = tmp_path / "f"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match="exists and is not a directory"):
        parse_file_dir(str(a_file))


@pytest.mark.parametrize("text", ["/", "/etc", "/etc/", "/usr/../etc", "/var", "/home"])
def test_file_dir_refuses_system_directories(text: str) -> None:
    with pytest.raises(ConfigError, match="system directory"):
        parse_file_dir(text)


@pytest.mark.parametrize("text", ["", "   "])
def test_file_dir_refuses_an_empty_path(text: str) -> None:
    with pytest.raises(ConfigError, match="empty path"):
        parse_file_dir(text)


def test_file_dir_refuses_a_nul_byte() -> None:
    with pytest.raises(ConfigError, match="NUL"):
        parse_file_dir("/tmp/a\0b")


def test_file_dir_refuses_a_name_too_long_to_look_at(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="too long"):
        parse_file_dir(str(tmp_path / ("a" * 5000)))


# -- election path ---------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["/election", "/apps/election", " /e "])
def test_election_path_accepts_absolute_paths_below_the_root(text: str) -> None:
    assert parse_election_path(text) == text.strip()


@pytest.mark.parametrize(
    "text", ["", "/", "election", "/election/", "//election", "/a//b", "/a/./b", "/a/.."]
)
def test_election_path_refuses_root_relative_and_malformed_paths(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_election_path(text)


# -- identity --------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["election-0", "pod_1.ns", "a" * 253])
def test_identity_accepts_printable_names(text: str) -> None:
    assert parse_identity(text) == text


def test_identity_is_stripped() -> None:
    assert parse_identity("  election-0 ") == "election-0"


@pytest.mark.parametrize("text", ["", "   "])
def test_identity_refuses_empty(text: str) -> None:
    with pytest.raises(ConfigError, match="empty identity"):
        parse_identity(text)


@pytest.mark.parametrize("text", ["a/b", "a\x00b", "tab\there", "a" * 254])
def test_identity_refuses_slashes_control_characters_and_long_names(text: str) -> None:
    with pytest.raises(ConfigError, match="printable"):
        parse_identity(text)


# -- ZooKeeper's characters, chroots, and the limits of kazoo and the schedule (issue 9, item 11/12)


@given(st.characters(codec="utf-8"))
def test_identity_accepts_exactly_the_printable_characters_zookeeper_stores(char: str) -> None:
    code = ord(char)
    storable = code > 0x1F and not 0x7F <= code <= 0x9F and not 0xD800 <= code <= 0xF8FF and code < 0xFFF0
    expected = storable and char != "/" and char.isprintable()
    try:
        accepted = parse_identity(f"a{char}b") == f"a{char}b"
    except ConfigError:
        accepted = False
    assert accepted == expected


@pytest.mark.parametrize(
    ("text", "servers", "chroot"),
    [
        ("zk1:2181,zk2:2181/apps/election", ("zk1", "zk2"), "/apps/election"),
        ("[::1]:2181/apps", ("::1",), "/apps"),
        ("zk:2181/", ("zk",), None),  # as ZooKeeper's ConnectStringParser: "/" alone is no chroot
        ("zk:2181", ("zk",), None),
    ],
)
def test_zk_connect_takes_a_chroot_after_the_last_server(
    text: str, servers: tuple[str, ...], chroot: str | None
) -> None:
    connect = parse_zk_connect(text)
    assert tuple(s.host for s in connect.servers) == servers
    assert connect.chroot == chroot


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("zk1:2181/apps,zk2:2181", "middle of the list"),
        ("zk:2181/apps/", "not a valid ZooKeeper path"),
        ("zk:2181/a/./b", "not a valid ZooKeeper path"),
        ("zk:2181/a\x01", "character ZooKeeper refuses"),
        ("zk:2181/a\U0001f600", "character ZooKeeper refuses"),
        ("/apps", "no ZooKeeper server"),
    ],
)
def test_zk_connect_refuses_a_misplaced_or_invalid_chroot(text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_zk_connect(text)


def test_zk_timeout_stops_at_32_bit_milliseconds() -> None:
    assert parse_zk_timeout("596h31m23.647s") * 1000 <= 2**31 - 1
    with pytest.raises(ConfigError, match="2\\*\\*31-1 ms"):
        parse_zk_timeout("596h31m23.648s")


def test_period_stops_at_10ms() -> None:
    assert parse_period("10ms") == 0.01
    with pytest.raises(ConfigError, match="shorter than 10ms"):
        parse_period("9.999ms")


# -- every parser, arbitrary text ------------------------------------------------------------

PARSERS: list[Callable[[str], Any]] = [
    parse_zk_servers,
    parse_zk_connect,
    parse_zk_timeout,
    parse_period,
    parse_host_port,
    lambda text: parse_host_port(text, allow_empty_host=True, allow_port_zero=True),
    parse_positive_duration,
    parse_positive_int,
    parse_file_dir,
    parse_election_path,
    parse_identity,
    parse_ordinals,
]
PARSER_IDS = [
    "zk_servers",
    "zk_connect",
    "zk_timeout",
    "period",
    "host_port",
    "listen_address",
    "positive_duration",
    "positive_int",
    "file_dir",
    "election_path",
    "identity",
    "ordinals",
]

# -- no-lead ordinals --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ordinals"),
    [("2", {2}), ("0,3", {0, 3}), (" 1 , 4 ", {1, 4}), ("2,2", {2}), ("010", {10})],
)
def test_ordinals_parse_a_comma_separated_list(text: str, ordinals: set[int]) -> None:
    assert parse_ordinals(text) == ordinals


@pytest.mark.parametrize("text", ["", "1,,2", "-1", "two", "1.5", "1;2", "+1", "1234567890"])
def test_ordinals_refuse_what_is_not_a_list_of_whole_numbers(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_ordinals(text)


@pytest.mark.parametrize(
    ("identity", "ordinal"),
    [
        ("election-0", 0),
        ("election-12", 12),
        ("my-release-election-2", 2),
        ("election", None),
        ("election-", None),
        ("-3", None),
        ("election-2a", None),
        ("r2", None),
    ],
)
def test_the_ordinal_is_the_number_after_the_last_dash_as_a_statefulset_names_its_pods(
    identity: str, ordinal: int | None
) -> None:
    assert ordinal_of(identity) == ordinal


def test_a_replica_does_not_lead_exactly_when_its_ordinal_is_listed() -> None:
    listed = frozenset({0, 2})
    assert [no_lead_by_ordinal(f"election-{i}", listed) for i in range(4)] == [True, False, True, False]


def test_an_identity_without_an_ordinal_is_refused_rather_than_read_as_not_listed() -> None:
    with pytest.raises(ConfigError, match="'r2' has no ordinal"):
        no_lead_by_ordinal("r2", frozenset({2}))


# Text with the characters the parsers care about, so that examples get past the first checks.
_NEAR_MISS = st.text(alphabet=st.sampled_from(list("0123456789:,.[]/-+ hmsuµnx²٣\t")), max_size=30)


@pytest.mark.parametrize("parse", PARSERS, ids=PARSER_IDS)
@given(text=st.one_of(st.text(), _NEAR_MISS))
def test_every_parser_returns_or_raises_config_error(parse: Callable[[str], Any], text: str) -> None:
    try:
        parse(text)
    except ConfigError as exc:
        assert "\n" not in str(exc)  # the CLI prints it as one line
