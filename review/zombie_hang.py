"""stop() never returns when the group keeps a zombie that is not ours: a process that left the group
(setsid) after forking a child that stays in it and exits unreaped. killpg(pgid, 0) succeeds on the
zombie, SIGKILL cannot remove it, and we are not its parent, so waitpid(-pgid) cannot reap it."""

import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from prometheus_client import CollectorRegistry  # noqa: E402

from app.adapters.command_work import CommandWork  # noqa: E402
from app.adapters.prometheus_metrics import PrometheusMetrics  # noqa: E402
from app.adapters.system_clock import SystemClock  # noqa: E402

CODE = """
import os, time
if os.fork() == 0:            # P, in the group
    if os.fork() == 0:        # C, in the group: exits at once, P never reaps it
        os._exit(0)
    os.setsid()               # P leaves the group (a daemon's detach)
    time.sleep(1000)
time.sleep(1000)              # the direct child
"""
clock = SystemClock()
work = CommandWork([sys.executable, "-c", CODE], stop_timeout=0.5, identity="me", election_path="/e",
                   metrics=PrometheusMetrics(CollectorRegistry(), clock.monotonic, ["Leader"]),
                   monotonic=clock.monotonic, wall=clock.wall, wake=lambda: None)
work.period(6.0)
work.begin(1)
work.step(1, valid_until=clock.monotonic() + 6.0)
time.sleep(1.0)
t = threading.Thread(target=work.stop, args=("test",), daemon=True)
t0 = time.monotonic()
t.start()
t.join(10)
print("stop() returned" if not t.is_alive() else "stop() still running after 10 s (hangs forever)")
