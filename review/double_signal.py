"""SIGTERM, then a second SIGTERM 0.3 s later (an operator who insists, or Ctrl-C twice), while the
command's group is in its stop grace: election leaves with os._exit(143) and the group's grandchild
(which ignores SIGTERM) is never killed: PR_SET_PDEATHSIG reaches only the direct child.

usage: python review/double_signal.py
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from pathlib import Path

from harness import HB, PY, Replica, heartbeats, pids_alive, wait_for, zk

work = Path(tempfile.mkdtemp(prefix="r10sig-"))
hbdir = work / "hb"
hbdir.mkdir()
command = ["sh", "-c", f"{PY} {HB} {hbdir} grand --trap-term & exec {PY} {HB} {hbdir} child"]
with zk(work) as server:
    r1 = Replica("r1", server.address, work, command, stop="1.5s")
    try:
        wait_for(lambda: len(heartbeats(hbdir)) >= 2, 20, "r1's child and grandchild")
        r1.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        r1.proc.send_signal(signal.SIGTERM)
        print("election exited with", r1.proc.wait(10))
        time.sleep(2.0)
        for name, v in heartbeats(hbdir).items():
            print(f"{name:28s} pid={v[5]} alive 2s after election exited: {bool(pids_alive([v[5]]))}")
    finally:
        r1.kill()
        for v in heartbeats(hbdir).values():
            if pids_alive([v[5]]):
                os.kill(v[5], signal.SIGKILL)
