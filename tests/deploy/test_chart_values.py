"""values.yaml, values.schema.json and the values the chart refuses.

The schema is strict (draft-07, ``additionalProperties: false`` on every object the chart defines,
no remote ``$ref``) and mirrors values.yaml key for key; every value in values.yaml is documented with
a ``# --`` comment. Bad values are refused by ``helm template``/``helm lint`` with a message that
names the value.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy.chart import CHART, CI_VALUES, NAMESPACE, helm_template, run, tool

pytestmark = pytest.mark.deploy

SCHEMA = json.loads((CHART / "values.schema.json").read_text())
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())


def _walk_schema(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(path, node)]
    for key, child in node.get("properties", {}).items():
        found += _walk_schema(child, f"{path}.{key}" if path else key)
    return found


def test_schema_is_draft_07_and_valid() -> None:
    assert SCHEMA["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(SCHEMA)


def test_schema_has_no_remote_ref() -> None:
    refs = re.findall(r'"\$ref":\s*"([^"]*)"', json.dumps(SCHEMA))
    assert [r for r in refs if not r.startswith("#")] == []


def test_every_object_of_the_schema_with_properties_refuses_unknown_keys() -> None:
    loose = [
        path or "<root>"
        for path, node in _walk_schema(SCHEMA)
        if "properties" in node and node.get("additionalProperties") is not False
    ]
    assert loose == []


def _keys(node: Any, path: str = "") -> set[str]:
    if not isinstance(node, dict):
        return set()
    found = set()
    for key, child in node.items():
        here = f"{path}.{key}" if path else key
        found.add(here)
        found |= _keys(child, here)
    return found


def _schema_keys(node: dict[str, Any], path: str = "") -> set[str]:
    found = set()
    for key, child in node.get("properties", {}).items():
        here = f"{path}.{key}" if path else key
        found.add(here)
        found |= _schema_keys(child, here)
    return found


def test_schema_and_values_yaml_have_the_same_keys() -> None:
    values = _keys(VALUES)
    schema = _schema_keys(SCHEMA)
    # Objects the schema leaves open (Kubernetes types passed through: securityContext, affinity, ...)
    # hold keys that the schema does not list; nothing else may differ.
    open_objects = [p for p, n in _walk_schema(SCHEMA) if n.get("type") == "object" and "properties" not in n]
    values_only = {k for k in values - schema if not any(k.startswith(f"{o}.") for o in open_objects)}
    assert values_only == set(), "in values.yaml but not in the schema"
    assert schema - values == set(), "in the schema but not in values.yaml"


def test_defaults_and_ci_values_satisfy_the_schema() -> None:
    validator = jsonschema.Draft7Validator(SCHEMA)
    assert [e.message for e in validator.iter_errors(VALUES)] == []
    for path in CI_VALUES:
        merged = _merge(VALUES, yaml.safe_load(path.read_text()) or {})
        assert [e.message for e in validator.iter_errors(merged)] == [], path.name


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        nested = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _merge(out[key], value) if nested else value
    return out


def _documented_keys() -> tuple[set[str], set[str]]:
    """(keys of values.yaml with a `# --` comment in the block right above, every key), as dotted paths."""
    documented, every = set(), set()
    stack: list[tuple[int, str]] = []
    comments: list[str] = []
    for line in (CHART / "values.yaml").read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comments.append(stripped)
            continue
        match = re.match(r"^( *)([A-Za-z0-9_]+):", line)
        if not match:
            comments = [] if not stripped else comments
            continue
        indent = len(match.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([p for _, p in stack] + [match.group(2)])
        stack.append((indent, match.group(2)))
        every.add(path)
        if any(comment.startswith("# --") for comment in comments):
            documented.add(path)
        comments = []
    return documented, every


def _covered(path: str, documented: set[str], every: set[str]) -> bool:
    """Documented itself, inside a documented value (resources.requests), or all its children are."""
    if path in documented or any(path.startswith(f"{d}.") for d in documented):
        return True
    children = {p for p in every if p.startswith(f"{path}.")}
    return bool(children) and all(_covered(c, documented, every) for c in children)


def test_every_value_is_documented_with_a_double_dash_comment() -> None:
    documented, every = _documented_keys()
    assert {path for path in every if not _covered(path, documented, every)} == set()


def _refusal(*sets: str) -> str:
    """helm template's error for these --set values (helm lint only logs a template's `fail`)."""
    proc = helm_template(sets=sets)
    assert proc.returncode != 0, f"helm template accepted {sets}"
    return proc.stderr


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        (("replicaCount=-1",), "at '/replicaCount': minimum: got -1, want 0"),
        (("replicaCount=three",), "at '/replicaCount': got string, want integer"),
        (("config.storageCapacity=0",), "at '/config/storageCapacity': minimum: got 0, want 1"),
        (("config.leaderTimeout=10",), "at '/config/leaderTimeout': got number, want string"),
        (("config.leaderTimeout=10sec",), "at '/config/leaderTimeout': '10sec' does not match pattern"),
        (("config.logLevel=loud",), "at '/config/logLevel': value must be one of 'debug', 'info'"),
        (("persistence.enabled=maybe",), "at '/persistence/enabled': got string, want boolean"),
        (("bogus=1",), "at '': additional properties 'bogus' not allowed"),
        (("zookeeper.bogus=1",), "at '/zookeeper': additional properties 'bogus' not allowed"),
        (("zookeeper.replicaCount=-3",), "at '/zookeeper/replicaCount': minimum: got -3, want 1"),
        (("zookeeper.enabled=false",), "at '/zookeeper/external/servers': minItems: got 0, want 1"),
        (("zookeeper.external.servers={zk-0}",), "at '/zookeeper/external/servers/0': 'zk-0' does not match"),
        (("service.port=70000",), "at '/service/port': maximum: got 70,000, want 65,535"),
        (("zookeeper.tls.enabled=yes",), "at '/zookeeper/tls/enabled': got string, want boolean"),
        (("zookeeper.tls.bogus=1",), "at '/zookeeper/tls': additional properties 'bogus' not allowed"),
        (
            ("zookeeper.tls.existingSecret=ZK_TLS",),
            "at '/zookeeper/tls/existingSecret': 'ZK_TLS' does not match pattern",
        ),
        (("exec.stopTimeout=3",), "at '/exec/stopTimeout': got number, want string"),
        (("exec.stopTimeout=3sec",), "at '/exec/stopTimeout': '3sec' does not match pattern"),
        (("exec.command=sh",), "at '/exec/command': got string, want array"),
        (("exec.bogus=1",), "at '/exec': additional properties 'bogus' not allowed"),
        (("noLead.ordinals={-1}",), "at '/noLead/ordinals/0': minimum: got -1, want 0"),
        (("noLead.ordinals=2",), "at '/noLead/ordinals': got number, want array"),
        (("noLead.ordinals={1,1}",), "at '/noLead/ordinals': items at 0 and 1 are equal"),
        (("noLead.bogus=1",), "at '/noLead': additional properties 'bogus' not allowed"),
        (
            ("metrics.serviceMonitor.interval=1m30.5s",),
            "at '/metrics/serviceMonitor/interval': '1m30.5s' does",
        ),
    ],
)
def test_schema_refuses_a_bad_value_and_names_it(sets: tuple[str, ...], expected: str) -> None:
    message = _refusal(*sets)
    assert "values don't meet the specifications of the schema" in message, message
    assert expected in message, message
    set_args = [arg for item in sets for arg in ("--set", item)]
    lint = run([tool("helm"), "lint", "--strict", str(CHART), "--namespace", NAMESPACE, *set_args])
    assert lint.returncode != 0, f"helm lint accepted {sets}"
    assert expected in lint.stdout + lint.stderr


def test_grace_period_not_longer_than_the_shutdown_timeout_is_refused() -> None:
    message = _refusal("terminationGracePeriodSeconds=20")
    assert "terminationGracePeriodSeconds (20) must exceed config.shutdownTimeout (20s)" in message
    message = _refusal("terminationGracePeriodSeconds=60", "config.shutdownTimeout=1m0.5s")
    assert "must exceed config.shutdownTimeout (1m0.5s)" in message


def test_grace_period_longer_than_the_shutdown_timeout_is_accepted() -> None:
    proc = helm_template(sets=("terminationGracePeriodSeconds=61", "config.shutdownTimeout=1m0.5s"))
    assert proc.returncode == 0, proc.stderr


EXEC = ("exec.command={/app/worker}",)


def test_an_exec_stop_timeout_that_cannot_fit_the_lease_is_refused() -> None:
    # G <= (4/9) S - 250ms: 4.19s at the default 10s session.
    message = _refusal(*EXEC, "exec.stopTimeout=4.2s")
    assert (
        "exec.stopTimeout (4.2s) cannot fit the lease: the SIGKILL must land 250ms before a lease of 2/3 "
        "of the session runs out, so the grace is at most 4/9 of config.zkSessionTimeout (10s) minus "
        "250ms = 4.19s"
    ) in message, message
    message = _refusal(*EXEC, "config.zkSessionTimeout=4s", "exec.stopTimeout=1600ms")
    assert "at most 4/9 of config.zkSessionTimeout (4s) minus 250ms = 1.53s" in message, message


def test_an_exec_stop_timeout_that_fits_the_lease_is_accepted() -> None:
    for sets in [("exec.stopTimeout=4.19s",), ("config.zkSessionTimeout=4s", "exec.stopTimeout=1500ms")]:
        proc = helm_template(sets=(*EXEC, *sets))
        assert proc.returncode == 0, proc.stderr


def test_the_stop_timeout_is_checked_against_the_session_the_bundled_servers_grant() -> None:
    # tickTime 200 ms: the bundled servers grant at most 4 s of the 10 s asked for.
    message = _refusal(*EXEC, "zookeeper.tickTime=200")
    assert "(10s, granted as 4s by the bundled servers: 2-20 x zookeeper.tickTime) minus 250ms" in message
    proc = helm_template(sets=(*EXEC, "zookeeper.tickTime=200", "exec.stopTimeout=1.5s"))
    assert proc.returncode == 0, proc.stderr


def test_a_stop_timeout_is_not_checked_without_a_command() -> None:
    proc = helm_template(sets=("exec.stopTimeout=1m",))
    assert proc.returncode == 0, proc.stderr


def test_a_shutdown_timeout_that_cannot_cover_the_stop_and_the_release_is_refused() -> None:
    message = _refusal(*EXEC, "config.shutdownTimeout=3.9s", "terminationGracePeriodSeconds=10")
    assert (
        "config.shutdownTimeout (3.9s) must cover exec.stopTimeout (3s) + 1s to kill the command and "
        "release the leadership = 4s"
    ) in message, message
    proc = helm_template(sets=(*EXEC, "config.shutdownTimeout=4s", "terminationGracePeriodSeconds=10"))
    assert proc.returncode == 0, proc.stderr


def test_a_command_without_a_program_is_refused(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text('exec:\n  command: ["", "--flag"]\n')
    proc = run([tool("helm"), "template", "election", str(CHART), "-f", str(values)])
    assert proc.returncode != 0
    assert "exec.command: the first item, the program to run, is empty" in proc.stderr


EXTERNAL = (
    "zookeeper.enabled=false",
    "zookeeper.external.servers={zk-0.infra:2281,zk-1.infra:2281,zk-2.infra:2281}",
)


def test_tls_with_the_bundled_zookeeper_is_refused() -> None:
    message = _refusal("zookeeper.tls.enabled=true", "zookeeper.tls.existingSecret=zk-tls")
    assert (
        "zookeeper.tls.enabled needs an external ZooKeeper ensemble: the bundled one "
        "(zookeeper.enabled=true) serves plaintext only; set zookeeper.enabled=false and list the "
        "servers' secureClientPort in zookeeper.external.servers"
    ) in message, message


def test_tls_without_a_secret_is_refused() -> None:
    for sets in [(), ("zookeeper.tls.clientCertificate=true",)]:
        message = _refusal(*EXTERNAL, "zookeeper.tls.enabled=true", *sets)
        assert (
            "zookeeper.tls.enabled needs zookeeper.tls.existingSecret: the name of a Secret with the CA "
            "certificate under ca.crt (and tls.crt, tls.key with zookeeper.tls.clientCertificate)"
        ) in message, message


def test_tls_with_an_external_ensemble_and_a_secret_is_accepted() -> None:
    proc = helm_template(
        sets=(*EXTERNAL, "zookeeper.tls.enabled=true", "zookeeper.tls.existingSecret=zk-tls")
    )
    assert proc.returncode == 0, proc.stderr
    # The TLS values are ignored while TLS is off, with either ensemble.
    proc = helm_template(sets=("zookeeper.tls.clientCertificate=true", "zookeeper.tls.existingSecret=zk-tls"))
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        (
            ("noLead.ordinals={3}",),
            "noLead.ordinals: 3 names no pod: with replicaCount 3 the ordinals are 0-2",
        ),
        (("noLead.ordinals={0,5}", "replicaCount=5"), "noLead.ordinals: 5 names no pod"),
        (("noLead.ordinals={2,0,1}",), "noLead.ordinals lists all 3 replicas: none could ever lead"),
        (("noLead.ordinals={0}", "replicaCount=1"), "noLead.ordinals lists all 1 replicas"),
    ],
)
def test_a_no_lead_list_that_names_no_pod_or_every_pod_is_refused(
    sets: tuple[str, ...], expected: str
) -> None:
    message = _refusal(*sets)
    assert expected in message, message


@pytest.mark.parametrize(
    "sets",
    [
        ("noLead.ordinals={2}",),
        ("noLead.ordinals={0,3}", "replicaCount=5"),
        ("noLead.ordinals={1}", "replicaCount=0"),
    ],
)
def test_a_no_lead_list_that_leaves_a_candidate_is_accepted(sets: tuple[str, ...]) -> None:
    proc = helm_template(sets=sets)
    assert proc.returncode == 0, proc.stderr
