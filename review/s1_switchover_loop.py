"""20 switchovers in a row with 5 replicas; time request -> target's first file, against graceful
hand-overs (SIGTERM) in the same run; check that nobody but the target wrote in between and the
history's reasons."""
from __future__ import annotations

import random
import signal
import statistics
import sys
import time

from harness import cli, cluster, poll, raw, zk_client, leader_node
from tests.e2e.cluster import check_terms_do_not_interleave

N = int(sys.argv[1]) if len(sys.argv) > 1 else 20
with cluster() as (c, zk, work):
    reps = c.start(5)
    k = zk_client(c)
    poll(lambda: leader_node(k), 20, "a leader")
    times, bad = [], []
    for i in range(N):
        ln = poll(lambda: leader_node(k), 20, "a leader")
        poll(lambda: c.first_file_after(ln["epoch"] - 1), 10, "leader's first file")
        target = random.choice([r.identity for r in reps if r.identity != ln["identity"]])
        t0 = time.time()
        rc, out, err, dt = cli(c, "switchover", f"--to={target}", "--wait=20s")
        f = c.wait_for_next_term(ln["epoch"], 20)
        took = f.written_at - t0
        times.append(took)
        if rc != 0 or f.identity != target:
            bad.append((i, rc, out, err, f.identity, target))
        print(f"{i:2d} {ln['identity']}->{target} rc={rc} first-file-by={f.identity} in {took*1000:.0f} ms | {out or err}")
    # graceful hand-overs, same run
    g = []
    for i in range(5):
        ln = poll(lambda: leader_node(k), 20, "a leader")
        poll(lambda: c.first_file_after(ln["epoch"] - 1), 10, "leader's first file")
        r = next(r for r in c.running if r.identity == ln["identity"])
        t0 = time.time()
        r.send(signal.SIGTERM)
        f = c.wait_for_next_term(ln["epoch"], 20)
        g.append(f.written_at - t0)
        r.wait_exit(20)
        reps.append(c.spawn(r.identity + "b"))
        reps[-1].wait_serving(20)
        print(f"graceful {ln['identity']} -> {f.identity} in {g[-1]*1000:.0f} ms")
    check_terms_do_not_interleave(c.leader_files())
    print("switchover ms p50 %.0f max %.0f; graceful p50 %.0f max %.0f" % (
        statistics.median(times) * 1000, max(times) * 1000, statistics.median(g) * 1000, max(g) * 1000))
    hist = raw(k, "history")["terms"]
    from collections import Counter
    print("history reasons:", Counter(t["reason"] for t in hist))
    print("pending request at end:", raw(k, "switchover"))
    print("BAD:", bad)
    rc, out, err, _ = cli(c, "audit") if False else (0, "", "", 0)
