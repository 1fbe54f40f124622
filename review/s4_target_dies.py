"""The target dies (SIGKILL) or freezes (SIGSTOP) just as the request is written: how long is the
cluster leaderless, and who leads after?"""
from __future__ import annotations

import json
import signal
import sys
import threading
import time

from harness import PATH, cli, cluster, poll, raw, zk_client, leader_node

MODE = sys.argv[1] if len(sys.argv) > 1 else "kill"
with cluster() as (c, zk, work):
    reps = c.start(4)
    k = zk_client(c)
    ln = poll(lambda: leader_node(k), 20, "a leader")
    target = next(r for r in reps if r.identity != ln["identity"])
    print("leader", ln["identity"], "target", target.identity)
    def killer():
        # the moment the request node holds the request, kill/freeze the target
        ev = threading.Event()
        @k.DataWatch(f"{PATH}/switchover")
        def _w(data, stat, *a):
            if data and json.loads(data or b"{}").get("id") and not ev.is_set():
                ev.set()
                target.send(signal.SIGKILL if MODE == "kill" else signal.SIGSTOP)
    killer()
    t0 = time.monotonic()
    rc, out, err, dt = cli(c, "switchover", f"--to={target.identity}", "--wait=10s")
    print(f"switchover rc={rc} after {dt:.1f}s out={out!r} err={err!r}")
    nl = poll(lambda: leader_node(k), 60, "a new leader")
    print(f"new leader {nl['identity']} epoch {nl['epoch']} at {time.monotonic()-t0:.1f}s after the request")
    if MODE != "kill":
        target.send(signal.SIGCONT)
        time.sleep(3)
        print("after SIGCONT, leader:", leader_node(k)["identity"], "target state:", target.state())
    print("history:", [(t["identity"], t["reason"]) for t in raw(k, "history")["terms"]])
