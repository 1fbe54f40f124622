"""The five states of the spec, one module each. :func:`all_states` builds the set the machine runs."""

from __future__ import annotations

from app.machine import State, StateName
from app.states.attempter import Attempter
from app.states.failover import Failover
from app.states.init import Init
from app.states.leader import Leader
from app.states.stopping import Stopping


def all_states() -> dict[StateName, State]:
    return {
        StateName.INIT: Init(),
        StateName.ATTEMPTER: Attempter(),
        StateName.LEADER: Leader(),
        StateName.FAILOVER: Failover(),
        StateName.STOPPING: Stopping(),
    }


__all__ = ["Attempter", "Failover", "Init", "Leader", "Stopping", "all_states"]
