"""The chart and the app agree, read from the app's own code (not from a copy of its docs).

* every ``ELECTION_*`` key of the ConfigMap is a flag of ``election run`` (click's own options), and
  every flag is set there, with a value the app's parsers accept, or by the pod: the identity (the
  pod's name), the credentials (a Secret), the TLS files (paths into the mounted Secret, which the
  app's own options and TLS rule accept once the Secret's keys are there);
* the probes' paths are served by the app's router and their port is the one it listens on;
* the grace period exceeds the shutdown timeout, which covers the command's stop and the release;
* the command of exec.command reaches the app as the same words (ELECTION_EXEC, shell-quoted);
* every metric that the dashboard and the alerts name is in a replica's exposition, and every state
  they select is a real state.

The live check (three real processes with this configuration) is test_chart_to_process.py.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from prometheus_client import CollectorRegistry

import app.wiring
from app.cli import cli
from app.config import ConfigError, Settings, TlsSettings, check_exec_timing, tls_settings
from app.durations import parse_duration
from app.http import Endpoints
from app.leases import LEASE_FRACTION, exec_grace_bound, lease_of
from tests.deploy.chart import (
    CHART,
    FULLNAME,
    MONITORING,
    SCENARIOS,
    ZK_TLS_DIR,
    ZOOKEEPER_AUTH,
    ZOOKEEPER_TLS,
    alert_rules,
    app_container,
    app_statefulset,
    connection_states,
    container_env,
    dashboard,
    dashboard_queries,
    env_of,
    exposed_metric_names,
    find,
    helm_template,
    leadership_change_reasons,
    metric_names_in,
    render,
    run_options,
    state_names,
    template_variable_queries,
    zookeeper_container,
)

pytestmark = pytest.mark.deploy

CHANGE_REASONS = leadership_change_reasons()


def _config(scenario: str = "defaults") -> dict[str, str]:
    return find(render(SCENARIOS[scenario]), "ConfigMap", FULLNAME)["data"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_configmap_key_is_a_flag_of_election_run(scenario: str) -> None:
    assert set(_config(scenario)) - set(run_options()) == set()


TLS_FILES = {"ELECTION_ZK_TLS_CA", "ELECTION_ZK_TLS_CERT", "ELECTION_ZK_TLS_KEY"}
NO_LEAD = {"ELECTION_NO_LEAD", "ELECTION_NO_LEAD_ORDINALS"}


def _set_for_the_app(scenario: str) -> set[str]:
    """The variables the app container gets: the ConfigMap's keys and its own env entries."""
    return set(_config(scenario)) | set(env_of(app_container(render(SCENARIOS[scenario]))))


def test_every_flag_is_set_by_the_configmap_or_by_the_pod() -> None:
    """Flags that come from elsewhere: the identity (the pod's name), the credentials (a Secret, with
    zookeeper.auth) and the TLS files (paths into the mounted Secret, with zookeeper.tls). The command
    and the no-lead ordinals only when given; --no-lead never: every pod shares the ConfigMap, so the
    ordinal list is how one pod is made no-lead."""
    unset = {"ELECTION_IDENTITY", "ELECTION_ZK_AUTH", "ELECTION_EXEC", *NO_LEAD, *TLS_FILES}
    assert set(run_options()) - set(_config()) == unset
    assert set(run_options()) - _set_for_the_app("defaults") == {
        "ELECTION_ZK_AUTH",
        "ELECTION_EXEC",
        *NO_LEAD,
        *TLS_FILES,
    }
    assert set(run_options()) - _set_for_the_app("zookeeper-auth") == {"ELECTION_EXEC", *NO_LEAD, *TLS_FILES}
    assert set(run_options()) - _set_for_the_app("external-zookeeper-tls") == {
        "ELECTION_ZK_AUTH",
        "ELECTION_EXEC",
        *NO_LEAD,
    }
    assert set(run_options()) - _set_for_the_app("exec") == {"ELECTION_ZK_AUTH", *NO_LEAD, *TLS_FILES}
    assert set(run_options()) - _set_for_the_app("no-lead") == {
        "ELECTION_ZK_AUTH",
        "ELECTION_EXEC",
        "ELECTION_NO_LEAD",
        *TLS_FILES,
    }
    env = env_of(app_container(render(ZOOKEEPER_AUTH)))
    assert env["ELECTION_IDENTITY"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["ELECTION_ZK_AUTH"] == {"secretKeyRef": {"name": "election-zookeeper-auth", "key": "zk-auth"}}
    env = env_of(app_container(render(ZOOKEEPER_TLS)))
    assert {key: env[key] for key in TLS_FILES} == {
        "ELECTION_ZK_TLS_CA": f"{ZK_TLS_DIR}/ca.crt",
        "ELECTION_ZK_TLS_CERT": f"{ZK_TLS_DIR}/tls.crt",
        "ELECTION_ZK_TLS_KEY": f"{ZK_TLS_DIR}/tls.key",
    }
    assert (_config()["ELECTION_ZK_TLS"], _config("external-zookeeper-tls")["ELECTION_ZK_TLS"]) == (
        "false",
        "true",
    )


def test_the_credentials_the_pod_gets_are_accepted_by_the_apps_option() -> None:
    docs = render(ZOOKEEPER_AUTH)
    env = container_env(docs, app_container(docs), pod_name="election-0")
    option = run_options()["ELECTION_ZK_AUTH"]
    assert option.type.convert(env["ELECTION_ZK_AUTH"], option, None) == "election:change-me"


def test_the_tls_files_the_pod_gets_are_accepted_by_the_apps_options(tmp_path: Path) -> None:
    """The TLS variables point into the Secret's volume: with the keys it projects written where it is
    mounted (tmp_path stands for the mount), the app's own options and its TLS rule accept them."""
    docs = render(ZOOKEEPER_TLS)
    container = app_container(docs)
    env = container_env(docs, container, pod_name="election-0")
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "zk-tls"]
    (volume,) = [
        v for v in app_statefulset(docs)["spec"]["template"]["spec"]["volumes"] if v["name"] == "zk-tls"
    ]
    for item in volume["secret"]["items"]:
        (tmp_path / item["path"]).write_text(f"PEM of the Secret's {item['key']}\n")
    options = run_options()
    files: dict[str, Path] = {}
    for key in sorted(TLS_FILES):
        path = PurePosixPath(env[key])
        assert path.parent == PurePosixPath(mount["mountPath"]), key
        files[key] = options[key].type.convert(str(tmp_path / path.name), options[key], None)
    tls = options["ELECTION_ZK_TLS"]
    enabled = tls.type.convert(env["ELECTION_ZK_TLS"], tls, None)
    settings = tls_settings(
        enabled, files["ELECTION_ZK_TLS_CA"], files["ELECTION_ZK_TLS_CERT"], files["ELECTION_ZK_TLS_KEY"]
    )
    assert settings == TlsSettings(tmp_path / "ca.crt", tmp_path / "tls.crt", tmp_path / "tls.key")


class _Captured(Exception):
    def __init__(self, settings: Settings) -> None:
        super().__init__("captured")
        self.settings = settings


def _settings_in_pod(docs: list[dict[str, Any]], pod_name: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The Settings ``election run`` builds from the environment Kubernetes gives the pod ``pod_name``
    (the app's own CLI, stopped before anything runs)."""

    def capture(settings: Settings, **_: Any) -> None:
        raise _Captured(settings)

    monkeypatch.setattr(app.wiring, "Replica", capture)
    env = container_env(docs, app_container(docs), pod_name)  # the file-dir is parsed, never created
    clean = {name: None for name in os.environ if name.startswith("ELECTION_")}
    result = CliRunner().invoke(cli, ["run", *app_container(docs).get("args", [])], env={**clean, **env})
    assert isinstance(result.exception, _Captured), result.output
    return result.exception.settings


@pytest.mark.parametrize(
    ("sets", "never_lead"),
    [((), set()), (("noLead.ordinals={2}",), {2}), (("noLead.ordinals={0,3}", "replicaCount=5"), {0, 3})],
)
def test_exactly_the_listed_pods_never_lead_as_the_app_reads_their_environment(
    sets: tuple[str, ...], never_lead: set[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = render(sets=sets)
    replicas = app_statefulset(docs)["spec"]["replicas"]
    no_lead = {
        ordinal
        for ordinal in range(replicas)
        if _settings_in_pod(docs, f"{FULLNAME}-{ordinal}", monkeypatch).no_lead
    }
    assert no_lead == never_lead


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_configmap_value_parses_with_the_apps_own_option_types(scenario: str) -> None:
    options = run_options()
    for key, value in _config(scenario).items():
        option = options[key]
        option.type.convert(value, option, None)  # raises click.BadParameter on a bad value


def _probe(kind: str) -> dict[str, Any]:
    probe: dict[str, Any] = app_container(render())[kind]["httpGet"]
    return probe


@pytest.mark.parametrize("kind", ["livenessProbe", "readinessProbe"])
def test_probe_port_is_the_port_the_app_listens_on(kind: str) -> None:
    container = app_container(render())
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    listen_port = int(_config()["ELECTION_HTTP_ADDRESS"].rsplit(":", 1)[1])
    assert ports[_probe(kind)["port"]] == listen_port


@pytest.mark.parametrize(("kind", "path"), [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")])
def test_probe_path_is_served_by_the_apps_router(kind: str, path: str) -> None:
    assert _probe(kind)["path"] == path
    app = Endpoints(
        CollectorRegistry(),
        status=dict,
        live=lambda: (True, "ok"),
        ready=lambda: (False, "no"),
        leading=lambda: (False, "no"),
    )
    statuses = []
    body = b"".join(app({"PATH_INFO": path}, lambda status, _headers: statuses.append(status)))
    assert statuses[0] == ("200 OK" if kind == "livenessProbe" else "503 Service Unavailable")
    assert b'"ok"' in body
    app({"PATH_INFO": "/nope"}, lambda status, _headers: statuses.append(status))
    assert statuses[-1] == "404 Not Found", "the router does not answer every path"


def test_grace_period_exceeds_the_shutdown_timeout() -> None:
    grace = app_statefulset(render())["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    shutdown = parse_duration(_config()["ELECTION_SHUTDOWN_TIMEOUT"])
    assert grace > shutdown
    assert (grace, shutdown) == (30, 20.0)


def test_with_a_command_the_grace_covers_the_shutdown_which_covers_the_stop_and_the_release() -> None:
    docs = render(SCENARIOS["exec"])
    grace = app_statefulset(docs)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    config = _config("exec")
    shutdown = parse_duration(config["ELECTION_SHUTDOWN_TIMEOUT"])
    stop = parse_duration(config["ELECTION_EXEC_STOP_TIMEOUT"])
    session = parse_duration(config["ELECTION_ZK_SESSION_TIMEOUT"])
    check_exec_timing(stop, session, shutdown)  # the app's own refusal at start
    assert stop <= exec_grace_bound(lease_of(session))
    assert grace > shutdown


@pytest.mark.parametrize(
    ("stop", "session", "shutdown"),
    [
        ("3s", "10s", "20s"),
        ("4.19s", "10s", "20s"),
        ("4.2s", "10s", "20s"),
        ("1500ms", "4s", "20s"),
        ("1600ms", "4s", "20s"),
        ("3s", "10s", "4s"),
        ("3s", "10s", "3900ms"),
        ("10s", "30s", "11s"),
    ],
)
def test_the_chart_refuses_exactly_the_exec_timings_the_app_refuses(
    stop: str, session: str, shutdown: str
) -> None:
    # An external ensemble: the bundled one also clamps the session, which the app cannot know at start.
    sets = (
        "zookeeper.enabled=false",
        "zookeeper.external.servers={zk:2181}",
        "exec.command={sh}",
        f"exec.stopTimeout={stop}",
        f"config.zkSessionTimeout={session}",
        f"config.shutdownTimeout={shutdown}",
        "terminationGracePeriodSeconds=60",
    )
    chart_accepts = helm_template(sets=sets).returncode == 0
    try:
        check_exec_timing(parse_duration(stop), parse_duration(session), parse_duration(shutdown))
        app_accepts = True
    except ConfigError:
        app_accepts = False
    assert chart_accepts == app_accepts


# Words a shell would mangle unquoted: spaces, quotes, an empty word, variables, globs, separators.
AWKWARD_WORDS = [
    "/app/run",
    "a b",
    "it's",
    "",
    "$ELECTION_EPOCH",
    '"q"',
    "x;y",
    "back\\slash",
    "*",
    "naïve",
    "-",
]


def test_the_command_reaches_the_app_as_the_same_words(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"exec": {"command": AWKWARD_WORDS}}, allow_unicode=True))
    config = find(render((str(values),)), "ConfigMap", FULLNAME)["data"]
    assert shlex.split(config["ELECTION_EXEC"]) == AWKWARD_WORDS
    option = run_options()["ELECTION_EXEC"]
    assert option.type.convert(config["ELECTION_EXEC"], option, None) == tuple(AWKWARD_WORDS)
    scenario = yaml.safe_load((CHART / "ci" / "exec-values.yaml").read_text())["exec"]["command"]
    assert shlex.split(_config("exec")["ELECTION_EXEC"]) == scenario


def test_without_a_command_the_app_writes_files() -> None:
    # The stop timeout is always set (every flag is); the command only when there is one, since the
    # app refuses an empty ELECTION_EXEC.
    assert _config()["ELECTION_EXEC_STOP_TIMEOUT"] == "3s"
    assert "ELECTION_EXEC" not in _config()
    assert "ELECTION_EXEC" not in env_of(app_container(render()))


def _queries() -> dict[str, str]:
    docs = render(MONITORING)
    queries = {f"alert {name}": rule["expr"] for name, rule in alert_rules(docs).items()}
    queries |= dashboard_queries(dashboard(docs))
    queries |= template_variable_queries(dashboard(docs))
    return queries


def test_the_alerts_and_the_dashboard_have_what_the_issue_asks() -> None:
    assert set(alert_rules(render(MONITORING))) == {
        "ElectionNoLeader",
        "ElectionMultipleLeaders",
        "ElectionLeadershipFlapping",
        "ElectionReplicaStuckInFailover",
        "ElectionWriteErrors",
        "ElectionFencedWrites",
        "ElectionNoWorkPublished",
        "ElectionWorkOnSeveralReplicas",
    }
    assert "ElectionWorkNotRunning" in alert_rules(render((*MONITORING, "ci/exec-values.yaml")))
    titles = {p["title"] for p in dashboard()["panels"]}
    assert {
        "Current leader",
        "State of each replica",
        "Time in current state",
        "State transitions",
        "Leadership changes",
        "Files written and deleted",
        "Write errors",
        "ZooKeeper connection state",
        "Replicas doing the work",
        "Work running on each replica",
        "Command exits and stops",
        "Terms",
        "Current term",
        "Leadership changes by reason",
        "Leader tenure",
    } <= titles


def _panel(title: str) -> dict[str, Any]:
    (panel,) = [p for p in dashboard()["panels"] if p["title"] == title]
    return panel


def test_the_dashboard_shows_the_work_on_exactly_one_replica_in_green() -> None:
    stat = _panel("Replicas doing the work")
    (target,) = stat["targets"]
    assert target["expr"] == 'sum(election_work_running{namespace="$namespace", job="$job"})'
    steps = stat["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps == [
        {"color": "red", "value": None},
        {"color": "green", "value": 1},
        {"color": "red", "value": 2},
    ]
    timeline = _panel("Work running on each replica")
    (per_pod,) = timeline["targets"]
    assert per_pod["expr"].startswith("max by (pod) (election_work_running{")
    (mapping,) = timeline["fieldConfig"]["defaults"]["mappings"]
    assert {value: option["text"] for value, option in mapping["options"].items()} == {
        "0": "not running",
        "1": "running",
    }
    exits, stops = _panel("Command exits and stops")["targets"]
    assert "sum by (code) (increase(election_work_exits_total{" in exits["expr"]
    assert "sum by (signal) (increase(election_work_stops_total{" in stops["expr"]


def test_the_dashboard_shows_each_term_by_its_epoch_why_it_ended_and_how_long_it_lasts() -> None:
    terms = _panel("Terms")
    assert terms["type"] == "state-timeline"
    (per_pod,) = terms["targets"]
    assert per_pod["expr"] == 'max by (pod) (election_leader_epoch{namespace="$namespace", job="$job"})'
    assert terms["options"]["mergeValues"], "one band per term: consecutive equal epochs merge"
    (mapping,) = terms["fieldConfig"]["defaults"]["mappings"]
    assert mapping["options"] == {"0": {"text": "not leading", "color": "transparent", "index": 0}}

    epoch, tenure = _panel("Current term")["targets"]
    assert epoch["expr"].startswith("max by (pod) (election_leader_epoch{")
    assert tenure["expr"].startswith("max by (pod) (election_leader_tenure_seconds{")
    assert all(t["instant"] and t["format"] == "table" for t in (epoch, tenure))

    (by_reason,) = _panel("Leadership changes by reason")["targets"]
    assert by_reason["expr"].startswith("sum by (reason) (increase(election_leadership_changes_total{")
    assert by_reason["legendFormat"] == "{{reason}}"
    coloured = {
        o["matcher"]["options"] for o in _panel("Leadership changes by reason")["fieldConfig"]["overrides"]
    }
    assert coloured == set(CHANGE_REASONS), "a colour for each reason the app counts, and only those"

    (tenure_line,) = _panel("Leader tenure")["targets"]
    assert tenure_line["expr"].startswith("max by (pod) (election_leader_tenure_seconds{")
    assert _panel("Leader tenure")["fieldConfig"]["defaults"]["unit"] == "s"


def test_the_flapping_alert_leaves_out_exactly_the_planned_reasons() -> None:
    expr = alert_rules(render(MONITORING))["ElectionLeadershipFlapping"]["expr"]
    assert "election_leadership_changes_total{" in expr
    (excluded,) = re.findall(r'reason!~"([^"]+)"', expr)
    assert set(excluded.split("|")) == {"graceful", "switchover"}
    assert set(excluded.split("|")) <= set(CHANGE_REASONS)


def test_every_metric_named_by_the_alerts_and_the_dashboard_is_exposed_by_the_app() -> None:
    exposed = exposed_metric_names()
    assert {"election_state_transitions_total", "election_is_leader"} <= exposed
    unknown = {where: sorted(metric_names_in(expr) - exposed) for where, expr in _queries().items()}
    assert {k: v for k, v in unknown.items() if v} == {}
    assert all(metric_names_in(expr) for expr in _queries().values()), "every query names a metric"


def test_every_state_the_queries_select_is_a_real_state() -> None:
    real = set(state_names()) | set(connection_states())
    selected = {s for expr in _queries().values() for s in re.findall(r'state="([^"]+)"', expr)}
    assert selected
    assert selected - real == set()
    board = dashboard()
    mapped = {
        option["text"]
        for panel in board["panels"]
        if any('state="' in target["expr"] for target in panel.get("targets", []))
        for mapping in panel.get("fieldConfig", {}).get("defaults", {}).get("mappings", [])
        for option in mapping["options"].values()
    }
    assert mapped == real


def test_every_dashboard_query_selects_the_release_by_namespace_and_job() -> None:
    for where, expr in dashboard_queries(dashboard()).items():
        for selector in re.findall(r"election_[a-z_]+\{([^}]*)\}", expr):
            assert 'namespace="$namespace"' in selector and 'job="$job"' in selector, where
    for name, rule in alert_rules(render(MONITORING)).items():
        for selector in re.findall(r"election_[a-z_]+\{([^}]*)\}", rule["expr"]):
            assert f'job="{FULLNAME}-metrics"' in selector and 'namespace="election"' in selector, name


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_cut_off_follower_drops_its_clients_well_inside_the_apps_lease(scenario: str) -> None:
    # A ZooKeeper follower that loses the quorum leader serves reads from its own copy for up to
    # syncLimit x tickTime before it closes its clients' connections. The app confirms with sync +
    # read (which such a follower cannot answer), and this is the second wall: the follower must
    # drop the leader's connection well inside the lease, 2/3 of the session the servers grant
    # (they clamp the requested one to [2, 20] x tickTime).
    docs = render(SCENARIOS[scenario])
    if not any(d.get("kind") == "StatefulSet" and "zookeeper" in d["metadata"]["name"] for d in docs):
        pytest.skip("an external ZooKeeper: its settings are not the chart's")
    zk = env_of(zookeeper_container(docs))
    tick = int(zk["ZOO_TICK_TIME"]) / 1000.0
    sync_window = int(zk["ZOO_SYNC_LIMIT"]) * tick
    requested = parse_duration(find(docs, "ConfigMap", FULLNAME)["data"]["ELECTION_ZK_SESSION_TIMEOUT"])
    granted = min(max(requested, 2 * tick), 20 * tick)
    lease = granted * LEASE_FRACTION
    assert sync_window <= lease / 2, (
        f"syncLimit x tickTime = {sync_window:g}s; lease = {LEASE_FRACTION:.3g} x {granted:g}s = {lease:.3g}s"
    )
    assert granted == requested, f"the servers would grant {granted:g}s of the {requested:g}s asked for"
