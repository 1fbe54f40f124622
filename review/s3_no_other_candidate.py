"""`election switchover` (no --to) when no other replica may lead: one candidate plus --no-lead
replicas. What happens to the cluster, and what does the command say?"""
from __future__ import annotations

import time

from harness import cli, cluster, poll, raw, zk_client, leader_node

with cluster() as (c, zk, work):
    a = c.spawn("cand")
    n1 = c.spawn("standby-1", env={"ELECTION_NO_LEAD": "1"})
    n2 = c.spawn("standby-2", env={"ELECTION_NO_LEAD": "1"})
    for r in (a, n1, n2):
        r.wait_serving(20)
    k = zk_client(c)
    ln = poll(lambda: leader_node(k), 20, "a leader")
    print("leader:", ln["identity"], ln["epoch"])
    t0 = time.monotonic()
    gaps = []
    import threading
    stop = threading.Event()
    def watch():
        last = True
        while not stop.is_set():
            cur = leader_node(k) is not None
            if cur != last:
                gaps.append((round(time.monotonic() - t0, 2), "leader" if cur else "NOBODY"))
                last = cur
            time.sleep(0.02)
    th = threading.Thread(target=watch, daemon=True); th.start()
    rc, out, err, dt = cli(c, "switchover", "--wait=8s")
    print(f"switchover rc={rc} after {dt:.1f}s out={out!r} err={err!r}")
    time.sleep(2)
    stop.set(); th.join()
    print("leader-node presence changes (s since request):", gaps)
    print("leader now:", leader_node(k))
