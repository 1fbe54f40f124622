"""Wake-up latency of a thread on this machine: how long after ``Event.set()`` the waiting thread runs.

    python bench/baselines/wakeup_probe.py --gap-ms 200 --samples 50 --third block

Not a contender: the micro-benchmark behind ``python -m bench wakeup`` (issue 13: does a thread that
slept long wake slower than one that polls?). The main thread waits on a ``threading.Event`` the
way the app's state machine does (``Event.wait`` with a long timeout); a second thread sleeps
``--gap-ms`` and sets it, as kazoo's callback thread does when a watch fires. A third thread does
what the app's HTTP thread does between requests, per ``--third``: ``none`` (no third thread),
``block`` (``selector.select()`` with no timeout: asleep until a socket is ready) or ``poll``
(``selector.select(0.05)`` in a loop: awake every 50 ms, the HTTP thread before issue 13). Prints one
JSON object: the latencies in seconds, set -> the waiter running again, measured on
``time.perf_counter`` in both threads.
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import threading
import time


def _third(kind: str, stop: threading.Event) -> threading.Thread | None:
    if kind == "none":
        return None
    reader, writer = socket.socketpair()
    selector = selectors.DefaultSelector()
    selector.register(reader, selectors.EVENT_READ)
    timeout = None if kind == "block" else 0.05

    def loop() -> None:
        while not stop.is_set():
            for _key, _mask in selector.select(timeout):
                reader.recv(16)

    thread = threading.Thread(target=loop, name="third", daemon=True)
    thread.start()
    stop_writer = writer  # stop() wakes a blocked selector through the pair
    threading.Thread(target=lambda: (stop.wait(), stop_writer.send(b"x")), daemon=True).start()
    return thread


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gap-ms", type=float, required=True)
    parser.add_argument("--samples", type=int, required=True)
    parser.add_argument("--third", choices=("none", "block", "poll"), required=True)
    args = parser.parse_args()
    stop = threading.Event()
    _third(args.third, stop)
    event = threading.Event()
    done = threading.Event()  # the waiter's acknowledgement: one wake-up in flight at a time
    set_at: list[float] = []
    latencies: list[float] = []

    def setter() -> None:
        for _ in range(args.samples):
            time.sleep(args.gap_ms / 1000)
            set_at.append(time.perf_counter())
            event.set()
            done.wait()
            done.clear()

    threading.Thread(target=setter, name="setter", daemon=True).start()
    for i in range(args.samples):
        event.wait()
        woke = time.perf_counter()
        event.clear()
        latencies.append(woke - set_at[i])
        done.set()
    stop.set()
    print(json.dumps({"gap_ms": args.gap_ms, "third": args.third, "latencies_s": latencies}))


if __name__ == "__main__":
    main()
