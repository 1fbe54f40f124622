"""The exec share of the chaos suite in CI: faults on replicas that run the heartbeat child under
``--exec`` (issue 10), checked by the no-overlap rule on the children's heartbeats.

The soak draws from :data:`tests.chaos.faults.EXEC_FAULTS` at random; these pin down the three kinds
of hand-over the rule must survive (graceful, a killed leader, a cut-off leader) on every run.
"""

from __future__ import annotations

import pytest

from tests.chaos.conftest import MakeChaos
from tests.chaos.injection import inject

pytestmark = pytest.mark.chaos


@pytest.mark.parametrize("fault", ["leader_sigterm", "leader_sigkill", "connection_cut"])
def test_no_two_children_run_at_once_across_the_fault(
    make_chaos: MakeChaos, chaos_results, request: pytest.FixtureRequest, fault: str
) -> None:
    result = inject(make_chaos, chaos_results, request.node.name, "standalone", fault, work="exec")
    assert result.new_terms >= 1 and result.overlap_s == 0
