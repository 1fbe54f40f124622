"""From the chart to running processes: the rendered configuration runs, and Prometheus sees it.

The chart is rendered with every monitoring object on and ZooKeeper credentials set (ci/). The app
container's environment is taken the way Kubernetes builds it (the ConfigMap through envFrom, then
the env entries: the pod name for ELECTION_IDENTITY, so three pods give three identities, and the
Secret's credentials for ELECTION_ZK_AUTH) and its command is the image's ENTRYPOINT,
``election run``, plus the container's args. Three real replicas run with exactly that, except what
a laptop is not a cluster for:

* ``ELECTION_ZK_SERVERS``: the test's ZooKeeper;
* ``ELECTION_HTTP_ADDRESS``: a free port on 127.0.0.1 per replica (the chart's port 8080 maps to it);
* ``ELECTION_FILE_DIR``: one temporary directory, shared like the chart's claim;
* ``ELECTION_ELECTION_PATH``: a path of this test run, under a root of its own (the app creates
  missing parents with its ACL, which must not close a path other tests share).

The exec scenario (ci/exec-values.yaml) runs the same way, separately: its command (a shell line with
quotes and ``$ELECTION_EPOCH``) must run on the leader only, as the words the chart wrote, and
SIGTERM must stop it and every replica within the grace period. The no-lead scenario
(ci/no-lead-values.yaml) too: the listed pod reports no-lead and never leads through two hand-overs.

Then the chart's probes are asked on each replica, the helm test pod's own command runs against
them, a real Prometheus (Debian's) scrapes them every second with the rendered PrometheusRule as
its rules file, and every dashboard query is evaluated over the live data. Last, SIGTERM: each
replica must exit 0 within the pod's terminationGracePeriodSeconds.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from kazoo.client import KazooClient

from tests.deploy.chart import (
    FULLNAME,
    MONITORING,
    NAMESPACE,
    SCENARIOS,
    ZOOKEEPER_AUTH,
    app_container,
    app_statefulset,
    container_env,
    dashboard,
    dashboard_queries,
    debian_tool,
    find,
    prometheus_rule_groups,
    render,
)
from tests.zookeeper_fixture import ZooKeeperEndpoint
from tools.ports import free_port
from tools.waiting import wait_for

pytestmark = pytest.mark.deploy

JOB = f"{FULLNAME}-metrics"
RATE_INTERVAL = "10s"  # what Grafana would put for $__rate_interval with a 1 s scrape interval
VENV_BIN = Path(sys.executable).parent


def _get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


@dataclass
class Pod:
    name: str
    env: dict[str, str]
    ports: dict[int, int]  # the chart's container port -> the port this process listens on
    process: subprocess.Popen[bytes]
    log: Path

    def url(self, container_port: int, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[container_port]}{path}"

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-15:])


@dataclass
class Deployment:
    docs: list[dict[str, Any]]
    container: dict[str, Any]
    pods: list[Pod]
    config: dict[str, str]  # the ConfigMap's data with the test's overrides
    file_dir: Path
    prometheus: str  # base URL

    def query(self, expr: str) -> list[dict[str, Any]]:
        status, body = _get(f"{self.prometheus}/api/v1/query?{urllib.parse.urlencode({'query': expr})}")
        answer = json.loads(body or b"{}")
        assert status == 200 and answer.get("status") == "success", f"{expr}: {status} {answer}"
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def api(self, path: str) -> Any:
        status, body = _get(f"{self.prometheus}/api/v1/{path}")
        assert status == 200, f"{path}: {status} {body[:300]!r}"
        return json.loads(body)["data"]


def _start_replicas(
    docs: list[dict[str, Any]], zk: ZooKeeperEndpoint, election_path: str, file_dir: Path, logs: Path
) -> tuple[list[Pod], dict[str, str]]:
    container = app_container(docs)
    replicas = app_statefulset(docs)["spec"]["replicas"]
    (http_port,) = [p["containerPort"] for p in container["ports"] if p["name"] == "http"]
    base = {k: v for k, v in os.environ.items() if not k.startswith("ELECTION_")}
    base["PATH"] = f"{VENV_BIN}{os.pathsep}{base.get('PATH', '')}"
    argv = [str(VENV_BIN / "election"), "run", *container.get("args", [])]  # the image's ENTRYPOINT
    pods = []
    for ordinal in range(replicas):
        name = f"{FULLNAME}-{ordinal}"
        env = container_env(docs, container, pod_name=name)
        listen_host, listen_port = env["ELECTION_HTTP_ADDRESS"].rsplit(":", 1)
        assert (listen_host, int(listen_port)) == ("0.0.0.0", http_port)
        port = free_port()
        env |= {
            "ELECTION_ZK_SERVERS": zk.address,
            "ELECTION_HTTP_ADDRESS": f"127.0.0.1:{port}",
            "ELECTION_FILE_DIR": str(file_dir),
            "ELECTION_ELECTION_PATH": election_path,
        }
        log = logs / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(argv, env={**base, **env}, stdout=out, stderr=subprocess.STDOUT)
        pods.append(Pod(name, env, {http_port: port}, process, log))
    config = dict(find(docs, "ConfigMap", FULLNAME)["data"])
    config.update({k: pods[0].env[k] for k in ("ELECTION_ZK_SERVERS", "ELECTION_ELECTION_PATH")})
    return pods, config


def _start_prometheus(
    docs: list[dict[str, Any]], pods: list[Pod], workdir: Path
) -> tuple[subprocess.Popen[bytes], str]:
    (workdir / "rules.yaml").write_text(yaml.safe_dump(prometheus_rule_groups(docs), sort_keys=False))
    monitor = find(docs, "ServiceMonitor", FULLNAME)["spec"]["endpoints"][0]
    targets = [
        {
            "targets": [f"127.0.0.1:{next(iter(pod.ports.values()))}"],
            "labels": {"namespace": NAMESPACE, "pod": pod.name},
        }
        for pod in pods
    ]
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "900ms", "evaluation_interval": "1s"},
        "rule_files": ["rules.yaml"],
        # What the operator makes of the ServiceMonitor: job = the metrics Service, path from the endpoint.
        "scrape_configs": [{"job_name": JOB, "metrics_path": monitor["path"], "static_configs": targets}],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    port = free_port()
    log = (workdir / "prometheus.log").open("wb")
    argv = [
        debian_tool("prometheus"),
        f"--config.file={workdir / 'prometheus.yml'}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert process.poll() is None, (workdir / "prometheus.log").read_text()[-2000:]
        return _get(f"{url}/-/ready")[0] == 200

    wait_for(ready, 30, "prometheus ready", interval=0.1)
    return process, url


@pytest.fixture(scope="module")
def deployment(
    zk_server: ZooKeeperEndpoint, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    docs = render((*MONITORING, *ZOOKEEPER_AUTH))
    workdir = tmp_path_factory.mktemp("chart-to-process")
    file_dir = workdir / "files"  # the shared claim
    election_path = f"/chart-to-process-{uuid.uuid4().hex[:8]}/election"
    pods, config = _start_replicas(docs, zk_server, election_path, file_dir, workdir)
    prometheus: subprocess.Popen[bytes] | None = None
    try:
        prometheus, url = _start_prometheus(docs, pods, workdir)
        yield Deployment(docs, app_container(docs), pods, config, file_dir, url)
    finally:
        for process in [p.process for p in pods] + ([prometheus] if prometheus else []):
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)


def _probe(deployment: Deployment, pod: Pod, kind: str) -> int:
    probe = deployment.container[kind]["httpGet"]
    ports = {p["name"]: p["containerPort"] for p in deployment.container["ports"]}
    port = ports[probe["port"]] if isinstance(probe["port"], str) else probe["port"]
    return _get(pod.url(port, probe["path"]))[0]


def _status(pod: Pod) -> dict[str, Any]:
    status, body = _get(pod.url(next(iter(pod.ports)), "/status"))
    return json.loads(body) if status == 200 else {}


def test_every_replica_passes_the_charts_liveness_and_readiness_probes(deployment: Deployment) -> None:
    for pod in deployment.pods:
        for kind in ("readinessProbe", "livenessProbe"):
            try:
                wait_for(lambda pod=pod, kind=kind: _probe(deployment, pod, kind) == 200, 30)
            except AssertionError:
                pytest.fail(f"{pod.name} fails its {kind}; its log ends:\n{pod.log_tail()}")


def test_replicas_are_named_after_their_pods_and_exactly_one_leads(deployment: Deployment) -> None:
    def leaders() -> list[str]:
        statuses = [_status(pod) for pod in deployment.pods]
        return [s["identity"] for s in statuses if s.get("state") == "Leader"]

    (leader,) = wait_for(leaders, 30, "a leader")
    assert [_status(pod)["identity"] for pod in deployment.pods] == [pod.name for pod in deployment.pods]
    assert leader in {pod.name for pod in deployment.pods}
    credentials = deployment.pods[0].env["ELECTION_ZK_AUTH"]
    assert all(pod.env["ELECTION_ZK_AUTH"] == credentials for pod in deployment.pods)
    acl = _acl(
        deployment.config["ELECTION_ZK_SERVERS"], deployment.config["ELECTION_ELECTION_PATH"] + "/leader"
    )
    user = credentials.split(":", 1)[0]
    assert ("digest", user) in {(a.id.scheme, a.id.id.split(":", 1)[0]) for a in acl}, (
        "created with the Secret's credentials"
    )
    written = wait_for(lambda: sorted(deployment.file_dir.glob("leader-*.json")), 15, "a file")
    assert json.loads(written[0].read_text())["identity"] == leader


def _acl(servers: str, path: str) -> list[Any]:
    client = KazooClient(hosts=servers)
    client.start(timeout=10)
    try:
        acl, _stat = client.get_acls(path)
        return list(acl)
    finally:
        client.stop()
        client.close()


def test_the_helm_test_pods_command_finds_exactly_one_leader(deployment: Deployment) -> None:
    pod = find(deployment.docs, "Pod", f"{FULLNAME}-test-leader")
    (container,) = pod["spec"]["containers"]
    env = container_env(deployment.docs, container, pod_name=pod["metadata"]["name"])
    env |= {k: deployment.config[k] for k in ("ELECTION_ZK_SERVERS", "ELECTION_ELECTION_PATH")}
    base = {k: v for k, v in os.environ.items() if not k.startswith("ELECTION_")}
    base["PATH"] = f"{VENV_BIN}{os.pathsep}{base.get('PATH', '')}"
    assert container["command"][0] == "python3"
    done = subprocess.run(
        container["command"], env={**base, **env}, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().splitlines()[-1].startswith("ok: election-"), done.stdout


def test_prometheus_scrapes_every_replica_and_sees_exactly_one_leader(deployment: Deployment) -> None:
    def targets_up() -> bool:
        targets = deployment.api("targets")["activeTargets"]
        return len(targets) == len(deployment.pods) and all(t["health"] == "up" for t in targets)

    wait_for(targets_up, 30, "every target up", interval=0.2)
    selector = f'job="{JOB}", namespace="{NAMESPACE}"'

    def leaders() -> float | None:
        result = deployment.query(f"sum(election_is_leader{{{selector}}})")
        return float(result[0]["value"][1]) if result else None

    wait_for(lambda: leaders() == 1.0, 30, "sum(election_is_leader) == 1", interval=0.2)
    connected = (
        f'sum(election_zk_connection_state{{{selector}, state="connected"}}) == {len(deployment.pods)}'
    )
    wait_for(lambda: deployment.query(connected), 30, "every replica connected", interval=0.2)


def test_no_leader_and_multiple_leaders_alerts_are_neither_pending_nor_firing(deployment: Deployment) -> None:
    selector = f'job="{JOB}", namespace="{NAMESPACE}"'
    one_leader = f"sum(election_is_leader{{{selector}}}) == 1"
    wait_for(lambda: deployment.query(one_leader), 30, "one leader in Prometheus", interval=0.2)
    since = time.time()

    def evaluated_since() -> bool:
        groups = deployment.api("rules")["groups"]
        stamps = [g["lastEvaluation"] for g in groups]
        return bool(stamps) and all(_rfc3339(s) > since + 1.0 for s in stamps)

    wait_for(evaluated_since, 15, "a rule evaluation over the live data", interval=0.2)
    rules = {r["name"]: r for g in deployment.api("rules")["groups"] for r in g["rules"]}
    assert set(rules) >= {"ElectionNoLeader", "ElectionMultipleLeaders"}
    assert all(r["health"] == "ok" for r in rules.values()), {n: r.get("lastError") for n, r in rules.items()}
    alerts = deployment.api("alerts")["alerts"]
    active = [(a["labels"]["alertname"], a["state"]) for a in alerts]
    assert [a for a in active if a[0] in {"ElectionNoLeader", "ElectionMultipleLeaders"}] == []
    assert active == [], "no alert at all on a healthy deployment"


def _rfc3339(text: str) -> float:
    """Prometheus's timestamps (nanoseconds, ``Z`` or an offset) as seconds since the epoch."""
    match = re.fullmatch(r"(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text)
    assert match, text
    zone = "+00:00" if match.group(3) == "Z" else match.group(3)
    return datetime.fromisoformat(f"{match.group(1)}.{(match.group(2) or '0')[:6]:0<6}{zone}").timestamp()


def test_every_dashboard_query_returns_data_from_the_live_replicas(deployment: Deployment) -> None:
    substitutions = {"$namespace": NAMESPACE, "$job": JOB, "$__rate_interval": RATE_INTERVAL}
    queries = {}
    for where, template in dashboard_queries(dashboard(deployment.docs)).items():
        expr = template
        for variable, value in substitutions.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"{where}: unknown variable in {expr}"
        queries[where] = expr

    missing: list[str] = []

    def every_query_has_data() -> bool:
        missing[:] = [where for where, expr in queries.items() if not deployment.query(expr)]
        return not missing

    try:
        wait_for(every_query_has_data, 30, "data for every panel", interval=0.5)
    except AssertionError:
        pytest.fail(f"these dashboard queries return no data: {missing}")
    leader = deployment.query(queries["Current leader [A]"])
    assert [r["metric"]["pod"] for r in leader] == [
        s["identity"] for s in map(_status, deployment.pods) if s["state"] == "Leader"
    ]
    states = {
        r["metric"]["pod"]: float(r["value"][1])
        for r in deployment.query(queries["State of each replica [A]"])
    }
    assert sorted(states.values()) == [2.0, 2.0, 3.0], "two Attempters (2) and one Leader (3)"
    working = deployment.query(queries["Replicas doing the work [A]"])
    assert [float(r["value"][1]) for r in working] == [1.0], "the work runs on exactly one replica"
    # Grafana's variables are label_values() over the build info: the release must be found there.
    assert NAMESPACE in deployment.api("label/namespace/values?match[]=election_build_info")
    assert JOB in deployment.api(
        "label/job/values?"
        + urllib.parse.urlencode({"match[]": f'election_build_info{{namespace="{NAMESPACE}"}}'})
    )


def test_sigterm_stops_every_replica_with_status_0_within_the_grace_period(deployment: Deployment) -> None:
    grace = app_statefulset(deployment.docs)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    started = time.monotonic()
    for pod in deployment.pods:
        pod.process.send_signal(signal.SIGTERM)
    for pod in deployment.pods:
        remaining = grace - (time.monotonic() - started)
        try:
            status = pod.process.wait(timeout=max(remaining, 0.1))
        except subprocess.TimeoutExpired:
            pytest.fail(f"{pod.name} still runs {grace} s after SIGTERM\n{pod.log_tail()}")
        assert status == 0, f"{pod.name} exited {status}\n{pod.log_tail()}"
    assert time.monotonic() - started < grace


def _alive(pid: int) -> bool:
    """A process that exists and is not a zombie (this container's pid 1 may not reap orphans)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_the_exec_scenario_runs_its_command_on_the_leader_only_and_sigterm_stops_it(
    zk_server: ZooKeeperEndpoint, tmp_path: Path
) -> None:
    docs = render(SCENARIOS["exec"])
    grace = app_statefulset(docs)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    election_path = f"/chart-to-process-exec-{uuid.uuid4().hex[:8]}/election"
    pods, _config = _start_replicas(docs, zk_server, election_path, tmp_path / "files", tmp_path)
    try:

        def running() -> list[tuple[str, dict[str, Any]]]:
            statuses = [(pod.name, _status(pod)) for pod in pods]
            return [(name, s) for name, s in statuses if (s.get("work") or {}).get("running")]

        try:
            ((name, status),) = wait_for(running, 30, "the command on one replica", interval=0.1)
        except (AssertionError, ValueError):
            pytest.fail("\n\n".join(f"{p.name}:\n{p.log_tail()}" for p in pods))
        assert status["state"] == "Leader" and status["work"]["kind"] == "exec"
        epoch, pid = status["work"]["epoch"], status["work"]["pid"]
        leader = next(p for p in pods if p.name == name)
        # The shell line reached sh as the chart's words: the quotes held and the variable expanded.
        wait_for(lambda: f"leading in epoch {epoch}, it's mine" in leader.log.read_text(), 10)
        assert _alive(pid)
        # Every replica serving (its signal handlers are installed before it serves): a SIGTERM
        # during a slow start-up kills a process before it can stop gracefully.
        wait_for(lambda: all(_status(pod) for pod in pods), 30, "every replica", interval=0.1)

        started = time.monotonic()
        for pod in pods:
            pod.process.send_signal(signal.SIGTERM)
        for pod in pods:
            remaining = grace - (time.monotonic() - started)
            assert pod.process.wait(timeout=max(remaining, 0.1)) == 0, pod.log_tail()
        assert not _alive(pid), "the command outlived its replica"
    finally:
        for pod in pods:
            if pod.process.poll() is None:
                pod.process.kill()
                pod.process.wait(timeout=10)


def test_the_no_lead_scenario_keeps_its_pod_out_of_every_hand_over(
    zk_server: ZooKeeperEndpoint, tmp_path: Path
) -> None:
    """ci/no-lead-values.yaml (noLead.ordinals [2]) run as three real replicas: election-2 says it is
    no-lead and never leads, not when the first leader stops, and not when the second one does too
    (then nobody leads, while election-2 still runs)."""
    docs = render(SCENARIOS["no-lead"])
    election_path = f"/chart-to-process-no-lead-{uuid.uuid4().hex[:8]}/election"
    pods, _config = _start_replicas(docs, zk_server, election_path, tmp_path / "files", tmp_path)
    by_name = {pod.name: pod for pod in pods}
    standby = by_name[f"{FULLNAME}-2"]
    try:

        def leaders() -> list[str]:
            live = [pod for pod in pods if pod.process.poll() is None]
            return [pod.name for pod in live if _status(pod).get("state") == "Leader"]

        def registered() -> bool:
            return all(_status(pod).get("state") is not None for pod in pods)

        wait_for(registered, 30, "every replica serving /status", interval=0.2)
        assert [_status(pod)["no_lead"] for pod in pods] == [False, False, True]
        for _term in range(2):
            (leader,) = wait_for(leaders, 30, "one leader", interval=0.1)
            assert leader != standby.name
            by_name[leader].process.send_signal(signal.SIGTERM)
            assert by_name[leader].process.wait(timeout=30) == 0, by_name[leader].log_tail()
        # Both candidates are gone: the standby sees that nobody leads, and it did not step in.
        wait_for(
            lambda: (
                _status(standby).get("zookeeper", {}).get("state") == "connected"
                and _status(standby).get("leader", "unknown") is None
            ),
            30,
            "the standby seeing that nobody leads",
            interval=0.2,
        )
        assert _status(standby)["state"] != "Leader"
        assert standby.process.poll() is None, standby.log_tail()
        assert '"event": "leadership_acquired"' not in standby.log.read_text()
    finally:
        for pod in pods:
            if pod.process.poll() is None:
                pod.process.kill()
                pod.process.wait(timeout=10)
