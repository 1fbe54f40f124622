"""One fault on a fresh election, the way every chaos test runs it: skipped with the reason when the
machine cannot offer what the fault needs, recorded in the results file, then the election stopped
and checked at rest.

A test binds :func:`inject` to its fixtures (``run_fault``, see ``tests/chaos/test_faults.py``) and
asserts what its fault adds beyond the invariants :meth:`tests.chaos.runner.Chaos.run` checks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.chaos.faults import FAULTS
from tests.chaos.model import FaultResult
from tests.chaos.runner import Chaos

RunFault = Callable[..., FaultResult]


def inject(
    make_chaos: Callable[..., Chaos],
    record: Callable[[str, FaultResult], None],
    test: str,
    kind: str,
    fault: str,
    *,
    work: str = "files",
    **options: Any,
) -> FaultResult:
    """Start an election on ZooKeeper ``kind`` (with the relays or tmpfs the fault needs), run
    ``fault`` on it, record the result under ``test``; fail with every violation if an invariant did
    not hold during the fault or, once every replica was stopped with SIGTERM, at rest."""
    needs = FAULTS[fault].needs
    if (reason := FAULTS[fault].unavailable(kind)) is not None:
        pytest.skip(reason)
    chaos = make_chaos(kind, work=work, relays="relays" in needs, tmpfs="tmpfs" in needs, **options)
    result = chaos.run(fault)
    result.work = work
    record(test, result)
    label = f"{fault} [{kind}]" if work == "files" else f"{fault} +{work}"
    assert result.ok, f"{label}: " + "\n  ".join(["", *result.violations])
    problems = chaos.finish()
    assert not problems, f"after {label}: " + "\n  ".join(["", *problems])
    return result
