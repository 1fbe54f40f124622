"""election: leader election over a ZooKeeper ephemeral node.

Layers, top to bottom (each imports only from the ones below it):

    cli        -> click commands; parse flags/env, print, exit
    wiring     -> builds adapters and the state machine for one process
    machine    -> the state machine loop and its context
    states     -> Init, Attempter, Leader, Failover, Stopping
    ports      -> protocols for coordination, storage, clock, metrics
    adapters   -> kazoo, the filesystem, prometheus-client, the system clock

Nothing above ``app.adapters.kazoo_coordinator`` imports kazoo.
"""

__version__ = "0.1.0"
