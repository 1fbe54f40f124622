"""checkov (``--framework kubernetes``, offline) finds nothing to fail in what the chart renders.

Every scenario is rendered into one directory and scanned in one run. A check the chart skips must be
skipped in the chart itself (a ``checkov.io/skipN`` annotation with a ``CHECK=reason`` value, next to
a comment saying why), and only the skips listed here are allowed: a new one is a decision to review.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.deploy.chart import SCENARIOS, render_text, run, tool

pytestmark = pytest.mark.deploy

ALLOWED_SKIPS = {
    # pinning by digest is optional (image.digest, zookeeper.image.digest)
    "CKV_K8S_43": {"StatefulSet.election.election", "StatefulSet.election.election-zookeeper",
                   "Pod.election.election-test-leader"},
    # IfNotPresent: right for version tags and digests; Always breaks side-loaded dev images
    "CKV_K8S_15": {"StatefulSet.election.election", "StatefulSet.election.election-zookeeper",
                   "Pod.election.election-test-leader"},
    # the official zookeeper image's user is uid 1000
    "CKV_K8S_40": {"StatefulSet.election.election-zookeeper"},
    # the app reads its ZooKeeper credentials only from ELECTION_ZK_AUTH (zookeeper-auth scenario)
    "CKV_K8S_35": {"StatefulSet.election.election"},
    # the helm test pod runs once and exits: nothing to probe
    "CKV_K8S_8": {"Pod.election.election-test-leader"},
    "CKV_K8S_9": {"Pod.election.election-test-leader"},
}  # fmt: skip


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:  # type: ignore[type-arg]
    directory: Path = tmp_path_factory.mktemp("rendered")
    for scenario, values in SCENARIOS.items():
        (directory / f"{scenario}.yaml").write_text(render_text(values))
    argv = [tool("checkov"), "--skip-download", "--framework", "kubernetes", "--directory", str(directory)]
    proc = run([*argv, "--output", "json"], timeout=300)
    assert proc.returncode in (0, 1), proc.stderr
    data = json.loads(proc.stdout)
    return data[0] if isinstance(data, list) else data


def test_checkov_finds_no_failed_check(report: dict) -> None:  # type: ignore[type-arg]
    failed = [
        f"{c['check_id']} {c['check_name']}: {c['resource']} ({Path(c['file_path']).name})"
        for c in report["results"]["failed_checks"]
    ]
    assert failed == []
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["passed"] > 200


def test_every_skip_is_an_allowed_one_with_its_reason_in_the_chart(report: dict) -> None:  # type: ignore[type-arg]
    skipped = report["results"]["skipped_checks"]
    assert skipped
    for check in skipped:
        assert check["resource"] in ALLOWED_SKIPS.get(check["check_id"], set()), check["check_id"]
        assert len(check["check_result"].get("suppress_comment", "")) > 20, (
            f"{check['check_id']} has no reason"
        )
