"""Cut the leader's path to ZooKeeper (TCP relay) and measure its child's last heartbeat against the cut,
and the successor's first. --stall: also stop reading the leader's stdout/stderr (a stalled log sink)
just before the cut. --grand: the command is sh -c 'hb grandchild (SIGTERM ignored) & exec hb child'.

usage: python review/cut.py [--stall] [--grand] [--rounds N]
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

from harness import HB, PY, Relay, Replica, boot, heartbeats, overlaps, pids_alive, wait_for, zk

stall = "--stall" in sys.argv
hold = float(sys.argv[sys.argv.index("--hold-main") + 1]) if "--hold-main" in sys.argv else None
grand = "--grand" in sys.argv
work = Path(tempfile.mkdtemp(prefix="r10cut-"))
hbdir = work / "hb"
hbdir.mkdir()
if grand:
    command = ["sh", "-c", f"{PY} {HB} {hbdir} grand --trap-term & exec {PY} {HB} {hbdir} child"]
else:
    command = [PY, HB, str(hbdir), "child"]
SESSION, LEASE, K = 4.0, 4.0 * 2 / 3, 0.25

with zk(work) as server:
    relays = [Relay(server.address), Relay(server.address)]
    r1 = Replica("r1", relays[0].address, work, command, stderr_pipe=True)
    try:
        wait_for(lambda: any(v[3] == "r1" for v in heartbeats(hbdir).values()), 20, "r1's child")
        r2 = Replica("r2", relays[1].address, work, command)
        wait_for(lambda: r2.has("zk_connection"), 20, "r2 connected")
        time.sleep(1.5)
        if stall:
            print("stalled r1's output:", r1.stall_output(), "bytes pushed into the pipe")
        cut = boot()
        relays[0].cut()
        print("cut r1 at", round(cut, 3))
        if hold is not None:
            # Hold r1's main thread (the state machine's) in its next futex call; other threads run on.
            import subprocess
            tracer = subprocess.Popen(["strace", "-qq", "-o", "/dev/null", "-p", str(r1.proc.pid), "-e", "trace=futex",
                                       "-e", f"inject=futex:delay_enter={int(hold * 1e6)}:when=1"])
        try:
            wait_for(lambda: any(v[3] == "r2" for v in heartbeats(hbdir).values()), 20, "r2's child")
        except AssertionError as e:
            print(e)
        time.sleep(3.0)
        hb = heartbeats(hbdir)
        for name, (t0, t1, epoch, ident, pgid, pid, role) in sorted(hb.items(), key=lambda kv: kv[1][0]):
            print(f"{name:28s} {ident} epoch={epoch} first={t0 - cut:+.3f}s last={t1 - cut:+.3f}s after the cut"
                  f" alive={bool(pids_alive([pid]))}")
        r1_last = max(v[1] for v in hb.values() if v[3] == "r1")
        print(f"r1's group last heartbeat {r1_last - cut:+.3f}s after the cut (bound: lease - K = {LEASE - K:.3f}s)")
        print("OVERLAPS:", overlaps(hbdir) or "none")
    finally:
        if hold is not None:
            tracer.terminate()
        if stall:
            r1.unstall_output()
        for r in (r1, locals().get("r2")):
            if r is not None:
                r.kill()
        for v in heartbeats(hbdir).values():
            if pids_alive([v[5]]):
                import os, signal
                os.kill(v[5], signal.SIGKILL)
print("work dir", work)
