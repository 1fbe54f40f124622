"""The chart and the app agree, read from the app's own code (not from a copy of its docs).

* every ``ELECTION_*`` key of the ConfigMap is a flag of ``election run`` (click's own options), and
  every flag is set there, with a value the app's parsers accept, or by the pod: the identity (the
  pod's name), the credentials (a Secret), the TLS files (paths into the mounted Secret, which the
  app's own options and TLS rule accept once the Secret's keys are there);
* the probes' paths are served by the app's router and their port is the one it listens on;
* the grace period exceeds the shutdown timeout;
* every metric that the dashboard and the alerts name is in a replica's exposition, and every state
  they select is a real state.

The live check (three real processes with this configuration) is test_chart_to_process.py.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from app.config import TlsSettings, tls_settings
from app.durations import parse_duration
from app.http import Endpoints
from app.leases import LEASE_FRACTION
from tests.deploy.chart import (
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
    metric_names_in,
    render,
    run_options,
    state_names,
    template_variable_queries,
    zookeeper_container,
)

pytestmark = pytest.mark.deploy


def _config(scenario: str = "defaults") -> dict[str, str]:
    return find(render(SCENARIOS[scenario]), "ConfigMap", FULLNAME)["data"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_configmap_key_is_a_flag_of_election_run(scenario: str) -> None:
    assert set(_config(scenario)) - set(run_options()) == set()


TLS_FILES = {"ELECTION_ZK_TLS_CA", "ELECTION_ZK_TLS_CERT", "ELECTION_ZK_TLS_KEY"}


def _set_for_the_app(scenario: str) -> set[str]:
    """The variables the app container gets: the ConfigMap's keys and its own env entries."""
    return set(_config(scenario)) | set(env_of(app_container(render(SCENARIOS[scenario]))))


def test_every_flag_is_set_by_the_configmap_or_by_the_pod() -> None:
    """Flags that come from elsewhere: the identity (the pod's name), the credentials (a Secret, with
    zookeeper.auth) and the TLS files (paths into the mounted Secret, with zookeeper.tls)."""
    assert set(run_options()) - set(_config()) == {"ELECTION_IDENTITY", "ELECTION_ZK_AUTH", *TLS_FILES}
    assert set(run_options()) - _set_for_the_app("defaults") == {"ELECTION_ZK_AUTH", *TLS_FILES}
    assert set(run_options()) - _set_for_the_app("zookeeper-auth") == TLS_FILES
    assert set(run_options()) - _set_for_the_app("external-zookeeper-tls") == {"ELECTION_ZK_AUTH"}
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
    app = Endpoints(CollectorRegistry(), status=dict, live=lambda: (True, "ok"), ready=lambda: (False, "no"))
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
    }
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
    } <= titles


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
