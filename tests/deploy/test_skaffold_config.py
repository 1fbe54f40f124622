"""skaffold.yaml: valid against skaffold's published v4beta14 schema, and consistent with the chart.

No skaffold binary exists for these machines; the schema lives in the project's shared folder,
``../shared/schemas/skaffold-v4beta14.json`` next to the repository. Without that folder (a clone
elsewhere) the schema test is skipped with that reason; everything else still runs.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy.chart import CHART, ROOT, app_container, find, render

pytestmark = pytest.mark.deploy

SKAFFOLD = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
SCHEMA = ROOT.parent / "shared" / "schemas" / "skaffold-v4beta14.json"


def _schema_errors(config: dict[str, Any]) -> list[str]:
    if not SCHEMA.parent.parent.is_dir():
        pytest.skip(
            f"{SCHEMA.parent.parent} is absent (the project's shared folder): no skaffold schema here"
        )
    assert SCHEMA.exists(), f"{SCHEMA} is missing from the shared folder"
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    best = jsonschema.exceptions.best_match(validator.iter_errors(config))
    return [] if best is None else [f"{'/'.join(map(str, best.absolute_path))}: {best.message[:300]}"]


def test_skaffold_yaml_validates_against_the_v4beta14_schema() -> None:
    assert _schema_errors(SKAFFOLD) == []


def test_the_schema_check_catches_a_misspelt_key() -> None:
    broken = copy.deepcopy(SKAFFOLD)
    broken["deploy"]["helm"]["releases"][0]["setValueTemplate"] = {}
    assert _schema_errors(broken) != []


def test_api_version_and_kind() -> None:
    assert SKAFFOLD["apiVersion"] == "skaffold/v4beta14"
    assert SKAFFOLD["kind"] == "Config"


def test_builds_the_image_from_the_dockerfile() -> None:
    (artifact,) = SKAFFOLD["build"]["artifacts"]
    assert artifact["image"] == "election"
    assert artifact["docker"]["dockerfile"] == "Dockerfile"
    assert (ROOT / artifact.get("context", ".") / artifact["docker"]["dockerfile"]).is_file()


def test_deploys_the_chart_with_the_built_image() -> None:
    (release,) = SKAFFOLD["deploy"]["helm"]["releases"]
    assert (ROOT / release["chartPath"]) == CHART
    assert release["setValueTemplates"] == {
        "image.repository": "{{.IMAGE_REPO_election}}",
        "image.tag": "{{.IMAGE_TAG_election}}",
    }


def test_the_values_skaffold_sets_are_accepted_by_the_chart() -> None:
    (release,) = SKAFFOLD["deploy"]["helm"]["releases"]
    sets = tuple(f"{k}={v}" for k, v in release["setValues"].items())
    sets += ("image.repository=localhost/election", "image.tag=dev-1234abcd")
    docs = render(sets=sets)
    assert app_container(docs)["image"] == "localhost/election:dev-1234abcd"


def test_port_forward_reaches_the_apps_http_port() -> None:
    (forward,) = SKAFFOLD["portForward"]
    (release,) = SKAFFOLD["deploy"]["helm"]["releases"]
    service = find(render(), "Service", forward["resourceName"])
    assert forward["resourceType"] == "service"
    assert forward["namespace"] == release["namespace"]
    assert forward["port"] == service["spec"]["ports"][0]["port"] == 8080
    assert forward["localPort"] == 8080


def _apply_profile(config: dict[str, Any], name: str) -> dict[str, Any]:
    """Skaffold's profile semantics for what this file uses: overlay the fields, then the patches."""
    profile = next(p for p in config["profiles"] if p["name"] == name)
    merged = copy.deepcopy(config)
    for section in ("manifests", "deploy"):
        merged.setdefault(section, {}).update(copy.deepcopy(profile.get(section, {})))
    for patch in profile.get("patches", []):
        assert patch["op"] == "remove"
        *parents, last = patch["path"].strip("/").split("/")
        node = merged
        for part in parents:
            node = node[part]
        del node[last]
    return merged


def test_plain_profile_deploys_k8s_with_kustomize_and_kubectl_only() -> None:
    plain = _apply_profile(SKAFFOLD, "plain")
    assert plain["manifests"] == {"kustomize": {"paths": ["k8s"]}}
    assert plain["deploy"] == {"kubectl": {}}
    assert (ROOT / "k8s" / "kustomization.yaml").exists()


def test_plain_profile_applied_still_validates_against_the_schema() -> None:
    assert _schema_errors(_apply_profile(SKAFFOLD, "plain")) == []
