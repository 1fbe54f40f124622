"""The work of the exec benchmark: a child that says it is alive every 10 ms.

    python -S bench/baselines/heartbeat.py DIR

Appends to ``DIR/hb-<pid>-<ns>.log`` (a pid is reused within minutes on a busy machine; the name
with its start time is not): its first beat, a JSON header (pid, parent, process group, its start
time in clock ticks as /proc has it, so that a reader can tell this process from a later one with
the same pid, and the fencing token its wrapper gave it, if any), then one line per beat: the wall
time (``time.time()``) at which it was written. The first beat goes out before anything else, so
"child started" is its first line and "last seen alive" its last one. Standard library only and run
with ``-S``: the start-up costs every wrapper the same few milliseconds. SIGTERM and SIGKILL end it
at once (default handlers).
"""

from __future__ import annotations

import json
import os
import sys
import time

PERIOD = 0.010


def main() -> None:
    directory = sys.argv[1]
    name = f"hb-{os.getpid()}-{time.time_ns()}.log"
    fd = os.open(os.path.join(directory, name), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.write(fd, f"{time.time():.6f}\n".encode())
    with open("/proc/self/stat") as stat:
        starttime = stat.read().rpartition(")")[2].split()[19]
    token = {
        k: os.environ[k] for k in ("ELECTION_EPOCH", "ETCD_LOCK_REV", "KAZOO_LOCK_NODE") if k in os.environ
    }
    header = {
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "pgid": os.getpgid(0),
        "starttime": starttime,
        **token,
    }
    os.write(fd, ("#" + json.dumps(header) + "\n").encode())
    next_beat = time.monotonic() + PERIOD
    while True:
        time.sleep(max(0.0, next_beat - time.monotonic()))
        os.write(fd, f"{time.time():.6f}\n".encode())
        next_beat += PERIOD


if __name__ == "__main__":
    main()
