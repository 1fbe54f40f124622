"""History reasons through: a crash, a graceful stop, a switchover, a resignation after write
failures of a leader that had written, and a resignation of a leader that never wrote (its disk
fails from the start). Also the leadership-changes counter by reason."""
from __future__ import annotations

import signal
import subprocess
import time

from harness import cli, cluster, poll, raw, zk_client, leader_node


def by_id(c, ident):
    return next(r for r in c.running if r.identity == ident)


def eio(pid):
    return subprocess.Popen(["strace", "-qq", "-f", "-o", "/dev/null", "-p", str(pid), "-e", "trace=fsync",
                             "-e", "inject=fsync:error=EIO"])


with cluster() as (c, zk, work):
    reps = c.start(5)
    k = zk_client(c)
    def next_leader(old_epoch):
        f = c.wait_for_next_term(old_epoch, 30)
        return poll(lambda: (leader_node(k) or {}).get("epoch", 0) >= f.epoch and leader_node(k), 10, "leader")
    ln = poll(lambda: leader_node(k), 20, "leader")
    poll(lambda: c.first_file_after(ln["epoch"] - 1), 10, "first file")
    steps = []
    # 1 crash
    by_id(c, ln["identity"]).send(signal.SIGKILL); steps.append((ln["identity"], ln["epoch"], "expected expired"))
    ln = next_leader(ln["epoch"])
    # 2 graceful
    time.sleep(0.5)
    by_id(c, ln["identity"]).send(signal.SIGTERM); steps.append((ln["identity"], ln["epoch"], "expected graceful"))
    ln = next_leader(ln["epoch"])
    time.sleep(0.5)
    # 3 switchover to a replica whose disk fails from the start
    victim = next(r for r in c.running if r.identity != ln["identity"])
    tracer = eio(victim.pid); time.sleep(1.0)
    rc, out, err, _ = cli(c, "switchover", f"--to={victim.identity}", "--wait=10s")
    print("switchover ->", victim.identity, rc, out or err)
    steps.append((ln["identity"], ln["epoch"], "expected switchover"))
    ln2 = poll(lambda: (leader_node(k) or {}).get("identity") not in (None, victim.identity) and leader_node(k), 30, "victim resigned")
    steps.append((victim.identity, "?", "expected resigned (never wrote)"))
    tracer.terminate(); tracer.wait()
    ln = ln2
    poll(lambda: c.first_file_after(ln["epoch"] - 1), 10, "first file")
    time.sleep(0.5)
    # 4 a leader that wrote, then its disk fails
    tracer = eio(by_id(c, ln["identity"]).pid); steps.append((ln["identity"], ln["epoch"], "expected resigned"))
    ln = next_leader(ln["epoch"])
    tracer.terminate(); tracer.wait()
    time.sleep(1.0)
    for s in steps:
        print("step:", s)
    for t in raw(k, "history")["terms"]:
        print("history:", t["epoch"], t["identity"], t["reason"])
    for r in c.running:
        m = r.metrics() or {}
        ch = {key: v for key, v in m.items() if "leadership_changes_total" in key}
        if ch:
            print("metrics", r.identity, ch)
    rc, out, err, _ = cli(c, "status", "--history")
    print(out)
