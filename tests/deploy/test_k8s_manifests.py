"""k8s/: the plain manifests are the chart rendered by scripts/render-k8s.sh, and kustomize builds them.

The script runs again into a temporary folder and must reproduce k8s/ byte for byte; ``kubectl
kustomize k8s`` (offline) must yield exactly the chart's objects (without the helm test) plus the
Namespace.
"""

from __future__ import annotations

import filecmp
import os
from pathlib import Path

import pytest
import yaml

from tests.deploy.chart import NAMESPACE, ROOT, kinds, render, run, tool

pytestmark = pytest.mark.deploy

K8S = ROOT / "k8s"


def test_k8s_is_what_render_k8s_sh_generates(tmp_path: Path) -> None:
    tool("helm")
    out = tmp_path / "k8s"
    proc = run([str(ROOT / "scripts" / "render-k8s.sh"), str(out)], cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    generated = sorted(p.name for p in out.iterdir())
    committed = sorted(p.name for p in K8S.iterdir())
    assert committed == generated, "run scripts/render-k8s.sh"
    _, mismatch, errors = filecmp.cmpfiles(out, K8S, generated, shallow=False)
    assert (mismatch, errors) == ([], []), "k8s/ is out of date: run scripts/render-k8s.sh"


def test_kustomization_lists_every_manifest() -> None:
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def test_kustomize_builds_the_charts_objects_and_the_namespace() -> None:
    proc = run([tool("kubectl"), "kustomize", str(K8S)])
    assert proc.returncode == 0, proc.stderr
    built = [d for d in yaml.safe_load_all(proc.stdout) if d]
    expected = [*kinds(render(skip_tests=True)), ("Namespace", NAMESPACE)]
    assert kinds(built) == sorted(expected)
    chart = {(d["kind"], d["metadata"]["name"]): d for d in render(skip_tests=True)}
    for doc in built:
        if doc["kind"] != "Namespace":
            assert doc == chart[(doc["kind"], doc["metadata"]["name"])], doc["metadata"]["name"]


def test_rerendering_with_another_namespace_does_not_touch_k8s(tmp_path: Path) -> None:
    tool("helm")
    before = {p.name: p.read_bytes() for p in K8S.iterdir()}
    script = str(ROOT / "scripts" / "render-k8s.sh")
    proc = run([script, str(tmp_path / "other")], cwd=ROOT, env={**os.environ, "NAMESPACE": "team-a"})
    assert proc.returncode == 0, proc.stderr
    assert {p.name: p.read_bytes() for p in K8S.iterdir()} == before
    config = (tmp_path / "other" / "configmap.yaml").read_text()
    assert "election-zookeeper.team-a.svc.cluster.local:2181" in config
