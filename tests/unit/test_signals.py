"""Stop signals: the handler takes no lock, the work happens on the signal thread (issue 9, item 9).

Python runs a signal handler on the main thread between two bytecodes, possibly while that thread
holds the lock of the machine's wakeup Event (inside ``Event.wait``). A handler that sets the Event
itself then waits for a lock its own thread holds: one SIGTERM was a deadlock. Signals are real here,
so each scenario runs in a child process that a deadlock cannot take the test run down with.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCENARIO_TIMEOUT = 20.0

_HANDLER_UNDER_HELD_LOCK = textwrap.dedent(
    """
    import signal, time
    from app.config import Settings
    from app.wiring import Replica
    from tests.fakes import FakeClock, FakeCoordinator, FakeStorage, FakeZooKeeper
    from tools.waiting import poll_until

    clock = FakeClock()
    replica = Replica(
        Settings(identity="t"), clock=clock, coordinator=FakeCoordinator(FakeZooKeeper()),
        storage=FakeStorage(clock),
    )
    replica.install_signal_handlers()
    with replica.ctx.wakeup._cond:  # what Event.wait holds between its looks
        signal.raise_signal(signal.SIGTERM)
        for _ in range(10_000):  # bytecodes: the Python-level handler runs here, on this thread
            pass
    print("handler returned", flush=True)
    poll_until(lambda: replica.ctx.stop_reason is not None, time.monotonic() + 10)
    print(replica.ctx.stop_reason, flush=True)
    signal.raise_signal(signal.SIGINT)  # a second signal: exit at once, 128 + SIGINT
    time.sleep(10)
    print("still running after a second signal", flush=True)
    """
)


def test_a_signal_while_the_main_thread_holds_the_wakeup_lock_stops_the_machine_and_a_second_exits() -> None:
    try:
        result = subprocess.run(
            [sys.executable, "-c", _HANDLER_UNDER_HELD_LOCK],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=SCENARIO_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"deadlocked in the signal handler; stdout so far: {exc.stdout!r}") from None
    assert result.stdout.splitlines() == ["handler returned", "received SIGTERM"], result
    assert result.returncode == 128 + 2, result
