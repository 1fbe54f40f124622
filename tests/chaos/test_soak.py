"""The soak in CI: a few random faults in a row (``python -m tests.chaos.soak``), seeded, bounded.

``ELECTION_CHAOS_SOAK_SEED`` and ``ELECTION_CHAOS_SOAK_FAULTS`` change the seed (default 4) and the
number of faults (default 6); a large soak is run by hand (see docs/RELIABILITY.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.chaos.model import FaultResult
from tests.chaos.soak import render
from tools.replicas import REPO_ROOT

pytestmark = pytest.mark.chaos

SEED = int(os.environ.get("ELECTION_CHAOS_SOAK_SEED", "4"))
FAULTS = int(os.environ.get("ELECTION_CHAOS_SOAK_FAULTS", "6"))
BUDGET = 90.0  # seconds the CI soak should take (6 faults take about 40 s on 2 loaded cores)


def test_soak_of_random_faults(
    tmp_path: Path, chaos_results: Callable[[str, FaultResult], None], request: pytest.FixtureRequest
) -> None:
    report_path = tmp_path / "soak.json"
    began = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.chaos.soak",
            f"--seed={SEED}",
            f"--faults={FAULTS}",
            f"--json={report_path}",
            f"--workdir={tmp_path / 'work'}",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=270,  # within pytest-timeout's 300 s, with room to report
        check=False,
    )
    took = time.monotonic() - began
    print(f"\n{done.stdout}")
    assert done.returncode == 0, f"soak failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr}"
    report = json.loads(report_path.read_text())
    for index, entry in enumerate(report["results"], start=1):
        result = FaultResult(**{k: v for k, v in entry.items() if k != "ok"})
        chaos_results(f"{request.node.name}[{index}]", result)
    assert len(report["results"]) == FAULTS
    assert all(r["ok"] for r in report["results"])
    assert all(r["overlap_s"] == 0 for r in report["results"])
    assert render(report["table"]) in done.stdout
    print(f"soak of {FAULTS} faults (seed {SEED}) took {took:.1f}s (budget {BUDGET:g}s)")
    assert took < 2 * BUDGET, f"the CI soak took {took:.1f}s"
