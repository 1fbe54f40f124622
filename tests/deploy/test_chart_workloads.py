"""What the chart's workloads promise: the app StatefulSet (and its TLS to an external ZooKeeper), the
bundled ZooKeeper ensemble, the NetworkPolicies.

The ZooKeeper probes are run for real (their bash ``/dev/tcp`` commands, against a local server).
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from typing import Any

import pytest

from tests.deploy.chart import (
    FULLNAME,
    NAMESPACE,
    SCENARIOS,
    ZK_TLS_DIR,
    ZOOKEEPER_TLS,
    app_container,
    app_statefulset,
    env_of,
    find,
    helm_test_pod,
    render,
    render_text,
    zookeeper_container,
)
from tools.zookeeper import LocalZooKeeper

pytestmark = pytest.mark.deploy

HARDENED = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _pod_spec(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return find(docs, "StatefulSet", name)["spec"]["template"]["spec"]


# --------------------------------------------------------------------------
# the app
# --------------------------------------------------------------------------


def test_app_statefulset_runs_three_peers_started_in_parallel() -> None:
    spec = app_statefulset(render())["spec"]
    assert spec["replicas"] == 3
    assert spec["podManagementPolicy"] == "Parallel"
    assert spec["serviceName"] == f"{FULLNAME}-headless"
    headless = find(render(), "Service", f"{FULLNAME}-headless")["spec"]
    assert headless["clusterIP"] == "None"
    assert headless["selector"] == spec["selector"]["matchLabels"]


def test_selectors_use_only_selector_labels() -> None:
    selector = app_statefulset(render())["spec"]["selector"]["matchLabels"]
    assert set(selector) == {
        "app.kubernetes.io/name",
        "app.kubernetes.io/instance",
        "app.kubernetes.io/component",
    }
    pod_labels = app_statefulset(render())["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()


def test_app_replicas_prefer_distinct_nodes() -> None:
    affinity = _pod_spec(render(), FULLNAME)["affinity"]["podAntiAffinity"]
    assert list(affinity) == ["preferredDuringSchedulingIgnoredDuringExecution"]
    term = affinity["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert (
        term["labelSelector"]["matchLabels"] == app_statefulset(render())["spec"]["selector"]["matchLabels"]
    )


def test_each_replica_is_named_after_its_pod() -> None:
    assert env_of(app_container(render()))["ELECTION_IDENTITY"] == {
        "fieldRef": {"fieldPath": "metadata.name"}
    }


def test_app_takes_its_settings_from_the_configmap() -> None:
    container = app_container(render())
    assert container["envFrom"] == [{"configMapRef": {"name": FULLNAME}}]
    assert "command" not in container, "the image's ENTRYPOINT (election run) runs"


def test_app_pod_and_container_are_hardened() -> None:
    spec = _pod_spec(render(), FULLNAME)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 10001
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    assert spec["enableServiceLinks"] is False
    context = app_container(render())["securityContext"]
    assert HARDENED.items() <= context.items()
    assert context["runAsUser"] == 10001


def test_shared_directory_is_one_read_write_many_claim_mounted_at_file_dir() -> None:
    docs = render()
    claim = find(docs, "PersistentVolumeClaim", f"{FULLNAME}-files")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    volumes = {v["name"]: v for v in _pod_spec(docs, FULLNAME)["volumes"]}
    assert volumes["files"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    mounts = {m["name"]: m["mountPath"] for m in app_container(docs)["volumeMounts"]}
    assert mounts["files"] == find(docs, "ConfigMap", FULLNAME)["data"]["ELECTION_FILE_DIR"]


def test_storage_class_is_configurable() -> None:
    claim = find(render(sets=("persistence.storageClass=nfs",)), "PersistentVolumeClaim")
    assert claim["spec"]["storageClassName"] == "nfs"
    claim = find(render(sets=("persistence.storageClass=-",)), "PersistentVolumeClaim")
    assert claim["spec"]["storageClassName"] == ""
    assert "storageClassName" not in find(render(), "PersistentVolumeClaim")["spec"]


def test_checksum_annotation_is_the_configmaps_digest_and_rolls_the_pods() -> None:
    def checksum(sets: tuple[str, ...]) -> str:
        return app_statefulset(render(sets=sets))["spec"]["template"]["metadata"]["annotations"][
            "checksum/config"
        ]

    rendered = render_text().split("# Source: election/templates/configmap.yaml\n", 1)[1].split("\n---", 1)[0]
    assert checksum(()) == hashlib.sha256(rendered.encode() + b"\n").hexdigest()
    assert checksum(()) != checksum(("config.leaderTimeout=5s",))
    assert checksum(()) == checksum(("replicaCount=5",)), "only the configuration rolls the pods"


def test_resources_are_optional() -> None:
    assert app_container(render())["resources"]["limits"]["memory"] == "256Mi"
    assert app_container(render(sets=("resources.requests=null", "resources.limits=null")))["resources"] == {}


def test_pod_disruption_budget_covers_the_app_pods() -> None:
    docs = render()
    budget = find(docs, "PodDisruptionBudget", FULLNAME)["spec"]
    assert budget["maxUnavailable"] == 1
    assert budget["selector"]["matchLabels"] == app_statefulset(docs)["spec"]["selector"]["matchLabels"]


def test_metrics_service_lists_pods_that_are_not_ready() -> None:
    spec = find(render(), "Service", f"{FULLNAME}-metrics")["spec"]
    assert spec["publishNotReadyAddresses"] is True  # a replica in Failover is not ready; its metrics matter


# --------------------------------------------------------------------------
# TLS to ZooKeeper
# --------------------------------------------------------------------------

TLS_ENV = {
    "ELECTION_ZK_TLS_CA": f"{ZK_TLS_DIR}/ca.crt",
    "ELECTION_ZK_TLS_CERT": f"{ZK_TLS_DIR}/tls.crt",
    "ELECTION_ZK_TLS_KEY": f"{ZK_TLS_DIR}/tls.key",
}


def _tls_pieces(
    pod_spec: dict[str, Any], container: dict[str, Any]
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """(the TLS variables, the zk-tls mounts, the zk-tls volumes) of a container and its pod."""
    env = {k: v for k, v in env_of(container).items() if k.startswith("ELECTION_ZK_TLS")}
    mounts = [m for m in container.get("volumeMounts", []) if m["name"] == "zk-tls"]
    volumes = [v for v in pod_spec.get("volumes", []) if v["name"] == "zk-tls"]
    return env, mounts, volumes


def _app_and_test_pod(docs: list[dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    test_spec = helm_test_pod(docs)["spec"]
    return {
        "app": _tls_pieces(_pod_spec(docs, FULLNAME), app_container(docs)),
        "helm test": _tls_pieces(test_spec, test_spec["containers"][0]),
    }


def test_tls_is_off_by_default_and_nothing_is_mounted() -> None:
    for scenario in ("defaults", "external-zookeeper", "zookeeper-auth"):
        docs = render(SCENARIOS[scenario])
        assert find(docs, "ConfigMap", FULLNAME)["data"]["ELECTION_ZK_TLS"] == "false", scenario
        for pod, pieces in _app_and_test_pod(docs).items():
            assert pieces == ({}, [], []), f"{scenario}: {pod}"
    assert "volumeMounts" not in helm_test_pod(render())["spec"]["containers"][0]
    assert "volumes" not in helm_test_pod(render())["spec"]


def test_tls_mounts_the_users_secret_read_only_where_the_app_and_the_helm_test_look() -> None:
    docs = render(ZOOKEEPER_TLS)
    assert find(docs, "ConfigMap", FULLNAME)["data"]["ELECTION_ZK_TLS"] == "true"
    for pod, (env, mounts, volumes) in _app_and_test_pod(docs).items():
        assert env == TLS_ENV, pod
        assert mounts == [{"name": "zk-tls", "mountPath": ZK_TLS_DIR, "readOnly": True}], pod
        assert volumes == [
            {
                "name": "zk-tls",
                "secret": {
                    "secretName": "election-zookeeper-tls",
                    "defaultMode": 0o440,
                    "items": [{"key": k, "path": k} for k in ("ca.crt", "tls.crt", "tls.key")],
                },
            }
        ], pod
    # The Secret is the user's: the chart neither renders it nor checksums it.
    assert not [d for d in docs if d["kind"] == "Secret"]
    annotations = app_statefulset(docs)["spec"]["template"]["metadata"]["annotations"]
    assert "checksum/secret" not in annotations
    # The app keeps the rest of its environment and mounts.
    assert env_of(app_container(docs))["ELECTION_IDENTITY"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert {m["name"] for m in app_container(docs)["volumeMounts"]} == {"files", "tmp", "zk-tls"}
    assert helm_test_pod(docs)["spec"]["containers"][0]["envFrom"] == [{"configMapRef": {"name": FULLNAME}}]


def test_tls_without_a_client_certificate_projects_and_passes_only_the_ca() -> None:
    docs = render(ZOOKEEPER_TLS, ("zookeeper.tls.clientCertificate=false",))
    for pod, (env, mounts, volumes) in _app_and_test_pod(docs).items():
        assert env == {"ELECTION_ZK_TLS_CA": f"{ZK_TLS_DIR}/ca.crt"}, pod
        assert len(mounts) == 1, pod
        assert volumes[0]["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}], pod


def test_tls_on_or_off_rolls_the_pods() -> None:
    def checksum(sets: tuple[str, ...]) -> str:
        return app_statefulset(render(ZOOKEEPER_TLS, sets))["spec"]["template"]["metadata"]["annotations"][
            "checksum/config"
        ]

    assert checksum(()) != checksum(("zookeeper.tls.enabled=false",))


# --------------------------------------------------------------------------
# ZooKeeper
# --------------------------------------------------------------------------


def test_zookeeper_is_three_servers_of_the_official_image() -> None:
    docs = render()
    spec = find(docs, "StatefulSet", f"{FULLNAME}-zookeeper")["spec"]
    assert spec["replicas"] == 3
    assert spec["podManagementPolicy"] == "Parallel"
    assert zookeeper_container(docs)["image"] == "zookeeper:3.9"
    assert spec["volumeClaimTemplates"][0]["spec"]["accessModes"] == ["ReadWriteOnce"]
    mounts = {m["name"]: m["mountPath"] for m in zookeeper_container(docs)["volumeMounts"]}
    assert mounts["data"] == env_of(zookeeper_container(docs))["ZOO_DATA_DIR"] == "/data"


@pytest.mark.parametrize("servers", [1, 3, 5])
def test_zoo_servers_lists_every_pod_by_its_stable_name(servers: int) -> None:
    docs = render(sets=(f"zookeeper.replicaCount={servers}",))
    env = env_of(zookeeper_container(docs))
    headless = f"{FULLNAME}-zookeeper-headless"
    expected = [
        f"server.{i + 1}={FULLNAME}-zookeeper-{i}.{headless}.{NAMESPACE}.svc.cluster.local:2888:3888;2181"
        for i in range(servers)
    ]
    assert env["ZOO_SERVERS"].split(" ") == expected
    assert env["ZOO_STANDALONE_ENABLED"] == ("true" if servers == 1 else "false")
    service = find(docs, "Service", headless)["spec"]
    assert service["clusterIP"] == "None"
    assert service["publishNotReadyAddresses"] is True
    assert {p["port"] for p in service["ports"]} == {2181, 2888, 3888}


def test_each_server_id_is_its_pod_ordinal_plus_one() -> None:
    script = zookeeper_container(render())["command"][-1]
    for pod, expected in [("election-zookeeper-0", "1"), ("election-zookeeper-2", "3")]:
        probe = script.replace("exec /docker-entrypoint.sh", "echo $ZOO_MY_ID #")
        out = subprocess.run(
            ["bash", "-ec", probe], env={"HOSTNAME": pod}, capture_output=True, text=True, check=True
        )
        assert out.stdout.strip() == expected


def test_zookeeper_is_hardened_and_spread_over_nodes() -> None:
    docs = render()
    spec = _pod_spec(docs, f"{FULLNAME}-zookeeper")
    assert spec["securityContext"]["runAsNonRoot"] is True
    for container in spec["containers"] + spec["initContainers"]:
        assert HARDENED.items() <= container["securityContext"].items(), container["name"]
    required = spec["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
    assert required["topologyKey"] == "kubernetes.io/hostname"
    soft = _pod_spec(render(sets=("zookeeper.podAntiAffinity=soft",)), f"{FULLNAME}-zookeeper")
    assert list(soft["affinity"]["podAntiAffinity"]) == ["preferredDuringSchedulingIgnoredDuringExecution"]


def test_zookeeper_budget_allows_one_server_down() -> None:
    budget = find(render(), "PodDisruptionBudget", f"{FULLNAME}-zookeeper")["spec"]
    assert budget["maxUnavailable"] == 1


def _probe_commands(port: int) -> dict[str, list[str]]:
    container = zookeeper_container(render())
    commands = {}
    for kind in ("livenessProbe", "readinessProbe"):
        command = list(container[kind]["exec"]["command"])
        command[-1] = command[-1].replace("/127.0.0.1/2181", f"/127.0.0.1/{port}")
        commands[kind] = command
    return commands


def test_zookeeper_probes_use_whitelisted_four_letter_words() -> None:
    container = zookeeper_container(render())
    whitelist = env_of(container)["ZOO_4LW_COMMANDS_WHITELIST"].split(",")
    used = {
        word
        for kind in ("livenessProbe", "readinessProbe")
        for word in re.findall(r"printf (\w{4})", container[kind]["exec"]["command"][-1])
    }
    assert used == {"ruok", "srvr"}
    assert used <= set(whitelist)


def test_zookeeper_probes_pass_against_a_serving_server_and_fail_without_one(
    zk_local: LocalZooKeeper,
) -> None:
    for kind, command in _probe_commands(zk_local.port).items():
        done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
        assert done.returncode == 0, f"{kind}: {done.stderr}"
    zk_local.stop()
    for kind, command in _probe_commands(zk_local.port).items():
        done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
        assert done.returncode != 0, f"{kind} passed with no server"


# --------------------------------------------------------------------------
# NetworkPolicies
# --------------------------------------------------------------------------


def test_only_the_app_and_its_test_reach_zookeepers_client_port() -> None:
    docs = render()
    policy = find(docs, "NetworkPolicy", f"{FULLNAME}-zookeeper")["spec"]
    zk_labels = find(docs, "StatefulSet", f"{FULLNAME}-zookeeper")["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= zk_labels.items()
    assert policy["policyTypes"] == ["Ingress"]
    client, peers = policy["ingress"]
    assert client["ports"] == [{"port": 2181, "protocol": "TCP"}]
    app_labels = app_statefulset(docs)["spec"]["template"]["metadata"]["labels"]
    test_labels = find(docs, "Pod", f"{FULLNAME}-test-leader")["metadata"]["labels"]
    selectors = [peer["podSelector"]["matchLabels"] for peer in client["from"]]
    assert [s.items() <= app_labels.items() for s in selectors] == [True, False]
    assert [s.items() <= test_labels.items() for s in selectors] == [False, True]
    assert not any(s.items() <= zk_labels.items() for s in selectors)
    assert {p["port"] for p in peers["ports"]} == {2888, 3888}
    assert [p["podSelector"]["matchLabels"] for p in peers["from"]] == [policy["podSelector"]["matchLabels"]]


def test_app_admits_only_its_http_port() -> None:
    policy = find(render(), "NetworkPolicy", FULLNAME)["spec"]
    assert policy["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}]}]


def test_network_policies_can_be_turned_off() -> None:
    assert not [d for d in render(sets=("networkPolicy.enabled=false",)) if d["kind"] == "NetworkPolicy"]
