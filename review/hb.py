"""Heartbeat child for the --exec review: writes CLOCK_BOOTTIME stamps every 10 ms to DIR/<role>-<pgid>-<pid>.

usage: hb.py DIR ROLE [--trap-term] [--stderr-blob N] [--exit-after S]
"""

import os
import signal
import sys
import threading
import time

d, role = sys.argv[1], sys.argv[2]
args = sys.argv[3:]
if "--trap-term" in args:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
exit_after = float(args[args.index("--exit-after") + 1]) if "--exit-after" in args else None
epoch = os.environ.get("ELECTION_EPOCH", "?")
name = f"{d}/{role}-{os.getpgid(0)}-{os.getpid()}"
start = time.monotonic()
with open(name, "a", buffering=1) as f:
    f.write(f"start {time.clock_gettime(time.CLOCK_BOOTTIME):.6f} {epoch} {os.environ.get('ELECTION_IDENTITY')}\n")
    while True:
        f.write(f"{time.clock_gettime(time.CLOCK_BOOTTIME):.6f}\n")
        if exit_after is not None and time.monotonic() - start > exit_after:
            sys.exit(3)
        time.sleep(0.01)
