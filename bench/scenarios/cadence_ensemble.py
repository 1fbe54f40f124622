"""Scenario 6b, cadence-ensemble: the cadence scenario with the leader on a follower of a quorum.

The same leaders, periods, ticks and report as ``cadence`` (``bench/scenarios/cadence.py``), but
ZooKeeper is a 3-member ensemble (``tools.ensemble.LocalEnsemble``, tick 200 ms, every member warmed
up) and the replica is given one member only, one that is a *follower*
(``--zk-servers=<follower>``). That is where the leader's fresh confirmation costs the most: a
follower answers a plain read from its own copy, but forwards a ``sync`` to the quorum leader and
holds the read behind it until the quorum leader's answer has come back, one more hop per tick.

Same-run baselines: the confirmation probe of ``cadence`` (plain ``get`` against ``sync`` +
``get``, interleaved) on the follower and on the quorum leader, and with ``--compare-app-ref REF``
the app at REF leading through the same follower. The write-then-sleep loop reads no ZooKeeper and
is measured by ``cadence``; it is not repeated here. The members' modes are read before and after
the leaders ran: a quorum election in between would be in the JSON (``modes_after``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.scenarios import RunContext, cadence
from bench.scenarios._skeleton import make_result

NAME = "cadence-ensemble"
TITLE = "6b. Cadence on an ensemble follower: the confirmation's extra hop"
ENSEMBLE_SIZE = 3


def run(ctx: RunContext) -> dict[str, Any]:
    ticks = ctx.pick_rounds(full=1000, quick=100)
    probe_samples = ctx.pick_rounds(full=1000, quick=50)
    started = time.time()
    with ctx.ensemble(NAME, size=ENSEMBLE_SIZE) as ens:
        quorum_leader = ens.leader()
        follower = next(m for m in ens if m is not quorum_leader)
        modes = {m.address: m.mode() for m in ens}
        probe = {
            "follower": cadence.confirm_probe(follower.address, probe_samples, f"/bench/{NAME}/probe/leader"),
            "quorum leader": cadence.confirm_probe(
                quorum_leader.address, probe_samples, f"/bench/{NAME}/probe/leader"
            ),
        }
        out = cadence.leaders(ctx, follower.address, ticks, naive=False, scenario=NAME)
        modes_after = {m.address: m.mode() for m in ens}
    targets = cadence.check_targets(out)
    return make_result(
        ctx,
        started,
        config={
            **cadence.config(ctx, ticks, probe_samples),
            "ensemble_size": ENSEMBLE_SIZE,
            "replica_zk_servers": follower.address,
            "modes": modes,
            "modes_after": modes_after,
        },
        summary={**out, "confirm_probe": probe, "targets": targets},
        rounds=[],
    )


def report(result: dict[str, Any]) -> str:
    c = result["config"]
    changed = "" if c["modes"] == c["modes_after"] else f"; MODES CHANGED during the run: {c['modes_after']}"
    return f"replica on follower {c['replica_zk_servers']} of {c['modes']}{changed}\n" + cadence.report(
        result, TITLE
    )


def plot(result: dict[str, Any], directory: Path) -> list[Path]:
    return cadence.plot(result, directory, name="cadence-ensemble", where=" on an ensemble follower")
