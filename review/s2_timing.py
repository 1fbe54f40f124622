"""Where a switchover's time goes: request node write (its mtime and our watch) -> old leader's
'handed over' log -> target's leadership log -> target's first file. Graceful hand-overs alongside."""
from __future__ import annotations

import json
import random
import signal
import statistics
import sys
import time
from datetime import datetime

from harness import PATH, cli, cluster, poll, zk_client, leader_node

N = int(sys.argv[1]) if len(sys.argv) > 1 else 10
def ts(rec):
    return datetime.fromisoformat(rec["time"].replace("Z", "+00:00")).timestamp() if "time" in rec else None

with cluster() as (c, zk, work):
    reps = c.start(5)
    k = zk_client(c)
    seen = {}
    @k.DataWatch(f"{PATH}/switchover")
    def _w(data, stat, *a):
        if data and json.loads(data or b"{}").get("id"):
            seen.setdefault(json.loads(data)["id"], (time.time(), stat.mtime / 1000))
    poll(lambda: leader_node(k), 20, "a leader")
    res = []
    for i in range(N):
        ln = poll(lambda: leader_node(k), 20, "a leader")
        poll(lambda: c.first_file_after(ln["epoch"] - 1), 10, "leader's first file")
        time.sleep(random.random() * 0.2)  # land anywhere in the leader's period
        target = random.choice([r.identity for r in reps if r.identity != ln["identity"]])
        rc, out, err, dt = cli(c, "switchover", f"--to={target}", "--wait=20s", "--json")
        j = json.loads(out)
        f = c.wait_for_next_term(ln["epoch"], 20)
        t_req = seen[j["request_id"]][1]
        res.append(f.written_at - t_req)
        print(f"{i:2d} {ln['identity']}->{target} rc={rc} cli_elapsed={j['elapsed_ms']}ms request->first file {res[-1]*1000:.0f} ms")
    g = []
    for i in range(5):
        ln = poll(lambda: leader_node(k), 20, "a leader")
        poll(lambda: c.first_file_after(ln["epoch"] - 1), 10, "leader's first file")
        time.sleep(random.random() * 0.2)
        r = next(r for r in c.running if r.identity == ln["identity"])
        t0 = time.time(); r.send(signal.SIGTERM)
        f = c.wait_for_next_term(ln["epoch"], 20); g.append(f.written_at - t0)
        r.wait_exit(20); reps.append(c.spawn(r.identity + "b")); reps[-1].wait_serving(20)
    print("switchover request->first file p50 %.0f ms max %.0f; graceful SIGTERM->first file p50 %.0f max %.0f" % (
        statistics.median(res) * 1000, max(res) * 1000, statistics.median(g) * 1000, max(g) * 1000))
    # one detailed trace from logs
    for r in c.replicas:
        for rec in r.log_records():
            if rec.get("event") in ("switchover", "leadership_acquired", "leadership_lost", "transition") and "switchover" in json.dumps(rec):
                pass
