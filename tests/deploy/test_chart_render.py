"""The Helm chart lints and renders, and what it renders is what Kubernetes and the operator accept.

Every scenario (the defaults and each ``ci/*-values.yaml``) is linted with ``helm lint --strict``,
rendered with ``helm template``, and every object is validated strictly (unknown fields are errors)
against the Kubernetes 1.30 and 1.35 schemas of ``kubernetes-validate``; the ServiceMonitor and the
PrometheusRule against the prometheus-operator models of ``cloudcoil-models-prometheus-operator``.
"""

from __future__ import annotations

import base64
import copy

import kubernetes_validate
import pytest
import yaml
from yamllint import linter
from yamllint.config import YamlLintConfig

from tests.deploy.chart import (
    CHART,
    FULLNAME,
    K8S_VERSIONS,
    MONITORING,
    NAMESPACE,
    SCENARIOS,
    find,
    kinds,
    operator_problems,
    render,
    render_text,
    run,
    tool,
)

pytestmark = pytest.mark.deploy

OPERATOR_KINDS = {"ServiceMonitor", "PrometheusRule"}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_helm_lint_strict_passes(scenario: str) -> None:
    args = [tool("helm"), "lint", "--strict", str(CHART), "--namespace", NAMESPACE]
    for path in SCENARIOS[scenario]:
        args += ["-f", str(CHART / path)]
    proc = run(args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_object_carries_the_release_namespace_and_standard_labels(scenario: str) -> None:
    for doc in render(SCENARIOS[scenario]):
        meta = doc["metadata"]
        where = f"{doc['kind']}/{meta['name']}"
        assert meta.get("namespace") == NAMESPACE, where
        labels = meta.get("labels", {})
        assert labels.get("app.kubernetes.io/name") == "election", where
        assert labels.get("app.kubernetes.io/instance") == "election", where
        assert labels.get("app.kubernetes.io/managed-by") == "Helm", where
        assert labels.get("helm.sh/chart", "").startswith("election-"), where


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_kubernetes_object_validates_strictly(scenario: str, version: str) -> None:
    problems = []
    checked = 0
    for doc in render(SCENARIOS[scenario]):
        if doc["kind"] in OPERATOR_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
            checked += 1
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            problems.append(f"{doc['kind']}/{doc['metadata']['name']} at {path or '<root>'}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"{doc['kind']} ({doc['apiVersion']}) has no schema in Kubernetes {version}")
    assert not problems, "\n".join(problems)
    assert checked >= 8


@pytest.fixture(scope="module")
def operator_verdicts() -> dict[str, list[str]]:
    """One run of the models (their import takes seconds): the two objects, and two broken copies."""
    monitor = find(render(MONITORING), "ServiceMonitor")
    rule = find(render(MONITORING), "PrometheusRule")
    misspelt = copy.deepcopy(monitor)
    misspelt["spec"]["endpoints"][0]["intervall"] = "10s"
    bad_duration = copy.deepcopy(rule)
    bad_duration["spec"]["groups"][0]["rules"][0]["for"] = "one minute"
    cases = {
        "ServiceMonitor": monitor,
        "PrometheusRule": rule,
        "misspelt": misspelt,
        "bad duration": bad_duration,
    }
    return dict(zip(cases, operator_problems(list(cases.values())), strict=True))


@pytest.mark.parametrize("kind", sorted(OPERATOR_KINDS))
def test_monitoring_objects_validate_against_the_prometheus_operator_models(
    kind: str, operator_verdicts: dict[str, list[str]]
) -> None:
    assert operator_verdicts[kind] == []


def test_the_operator_model_check_catches_an_unknown_field_and_a_bad_duration(
    operator_verdicts: dict[str, list[str]],
) -> None:
    (misspelt,) = operator_verdicts["misspelt"]
    assert "has fields that prometheus-operator does not know" in misspelt
    (bad_duration,) = operator_verdicts["bad duration"]
    assert "for" in bad_duration and "should match pattern" in bad_duration


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rendered_yaml_passes_yamllint(scenario: str) -> None:
    config = YamlLintConfig(
        "extends: default\n"
        "rules:\n"
        "  line-length: disable\n"  # long PromQL and ZOO_SERVERS lines
        "  indentation: {indent-sequences: whatever}\n"  # toYaml and hand-written lists differ
        "  comments: {min-spaces-from-content: 1}\n"
        "  document-start: disable\n"
    )
    problems = [
        f"line {p.line}: {p.desc} ({p.rule})"
        for p in linter.run(render_text(SCENARIOS[scenario]), config)
        if p.level == "error"
    ]
    assert not problems, "\n".join(problems)


def test_defaults_render_the_app_and_a_zookeeper_ensemble() -> None:
    assert kinds(render()) == sorted(
        [
            ("ConfigMap", FULLNAME),
            ("NetworkPolicy", FULLNAME),
            ("NetworkPolicy", f"{FULLNAME}-test"),
            ("NetworkPolicy", f"{FULLNAME}-zookeeper"),
            ("PersistentVolumeClaim", f"{FULLNAME}-files"),
            ("Pod", f"{FULLNAME}-test-leader"),
            ("PodDisruptionBudget", FULLNAME),
            ("PodDisruptionBudget", f"{FULLNAME}-zookeeper"),
            ("Service", f"{FULLNAME}-headless"),
            ("Service", f"{FULLNAME}-metrics"),
            ("Service", f"{FULLNAME}-zookeeper"),
            ("Service", f"{FULLNAME}-zookeeper-headless"),
            ("ServiceAccount", FULLNAME),
            ("ServiceAccount", f"{FULLNAME}-zookeeper"),
            ("StatefulSet", FULLNAME),
            ("StatefulSet", f"{FULLNAME}-zookeeper"),
        ]
    )


def test_external_zookeeper_renders_no_zookeeper_objects_and_points_the_app_at_the_servers() -> None:
    docs = render(SCENARIOS["external-zookeeper"])
    assert not [k for k in kinds(docs) if "zookeeper" in k[1]]
    values = yaml.safe_load((CHART / SCENARIOS["external-zookeeper"][0]).read_text())
    servers = ",".join(values["zookeeper"]["external"]["servers"])
    assert find(docs, "ConfigMap", FULLNAME)["data"]["ELECTION_ZK_SERVERS"] == servers


def test_bundled_zookeeper_is_reached_through_its_client_service() -> None:
    docs = render()
    service = find(docs, "Service", f"{FULLNAME}-zookeeper")
    assert service["spec"]["type"] == "ClusterIP"
    port = service["spec"]["ports"][0]["port"]
    expected = f"{FULLNAME}-zookeeper.{NAMESPACE}.svc.cluster.local:{port}"
    assert find(docs, "ConfigMap", FULLNAME)["data"]["ELECTION_ZK_SERVERS"] == expected


def test_existing_claim_is_mounted_and_no_claim_is_created() -> None:
    docs = render(SCENARIOS["existing-claim"])
    assert not [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
    volumes = find(docs, "StatefulSet", FULLNAME)["spec"]["template"]["spec"]["volumes"]
    files = next(v for v in volumes if v["name"] == "files")
    assert files["persistentVolumeClaim"]["claimName"] == "election-shared-files"


def test_monitoring_scenario_renders_service_monitor_rules_and_a_labelled_dashboard() -> None:
    docs = render(MONITORING)
    monitor = find(docs, "ServiceMonitor", FULLNAME)
    service = find(docs, "Service", f"{FULLNAME}-metrics")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items(), (
        "the ServiceMonitor selects the metrics Service"
    )
    headless = find(docs, "Service", f"{FULLNAME}-headless")
    assert not selector.items() <= headless["metadata"]["labels"].items(), "and not the headless one"
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    find(docs, "PrometheusRule", FULLNAME)
    board = find(docs, "ConfigMap", f"{FULLNAME}-dashboard")
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert board["metadata"]["annotations"] == {"grafana_folder": "Election"}
    assert board["data"]["election.json"] == (CHART / "dashboards" / "election.json").read_text().rstrip("\n")


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_install_notes_render_and_say_how_to_check_the_leader(scenario: str) -> None:
    args = [tool("helm"), "install", "election", str(CHART), "--namespace", NAMESPACE, "--dry-run=client"]
    for path in SCENARIOS[scenario]:
        args += ["-f", str(CHART / path)]
    proc = run(args)
    assert proc.returncode == 0, proc.stderr
    notes = proc.stdout.split("NOTES:", 1)[1]
    assert "helm test election -n election" in notes
    assert "kubectl -n election exec election-0 -- election status" in notes
    assert "kubectl -n election exec election-0 -- election switchover --to election-" in notes
    no_lead = "Never lead (noLead.ordinals): election-2." in notes
    assert no_lead == (scenario == "no-lead"), notes


def test_the_notes_switch_over_to_a_pod_that_may_lead() -> None:
    args = [tool("helm"), "install", "election", str(CHART), "--namespace", NAMESPACE, "--dry-run=client"]
    proc = run([*args, "--set", "noLead.ordinals={2,0}"])
    assert proc.returncode == 0, proc.stderr
    notes = proc.stdout.split("NOTES:", 1)[1]
    assert "Never lead (noLead.ordinals): election-2, election-0." in notes
    assert "election switchover --to election-1\n" in notes


def test_no_lead_ordinals_reach_every_pod_through_the_configmap_and_only_when_set() -> None:
    assert (
        find(render(SCENARIOS["no-lead"]), "ConfigMap", FULLNAME)["data"]["ELECTION_NO_LEAD_ORDINALS"] == "2"
    )
    config = find(render(sets=("noLead.ordinals={0,3}", "replicaCount=5")), "ConfigMap", FULLNAME)["data"]
    assert config["ELECTION_NO_LEAD_ORDINALS"] == "0,3"
    assert "ELECTION_NO_LEAD_ORDINALS" not in find(render(), "ConfigMap", FULLNAME)["data"]


def test_credentials_go_into_a_secret_that_the_app_reads() -> None:
    docs = render(SCENARIOS["zookeeper-auth"])
    secret = find(docs, "Secret", f"{FULLNAME}-zookeeper-auth")
    assert secret["data"] == {"zk-auth": base64.b64encode(b"election:change-me").decode()}
    assert "change-me" not in find(docs, "ConfigMap", FULLNAME)["data"].values()
    template = find(docs, "StatefulSet", FULLNAME)["spec"]["template"]
    assert "checksum/secret" in template["metadata"]["annotations"], "new credentials roll the pods"
    assert not [d for d in render() if d["kind"] == "Secret"], "no Secret without credentials"


def test_credentials_can_come_from_an_existing_secret() -> None:
    docs = render(sets=("zookeeper.auth.existingSecret=zk-creds", "zookeeper.auth.existingSecretKey=auth"))
    assert not [d for d in docs if d["kind"] == "Secret"]
    env = find(docs, "StatefulSet", FULLNAME)["spec"]["template"]["spec"]["containers"][0]["env"]
    (entry,) = [e for e in env if e["name"] == "ELECTION_ZK_AUTH"]
    assert entry["valueFrom"] == {"secretKeyRef": {"name": "zk-creds", "key": "auth"}}


def test_monitoring_objects_are_off_by_default() -> None:
    assert not {d["kind"] for d in render()} & OPERATOR_KINDS
    assert not [d for d in render() if d["metadata"]["name"].endswith("-dashboard")]
