"""The HTTP server under idle connections and connection bursts (issue 10), in-process.

``python -m bench.http_load [--app-src DIR] [--rounds N]`` starts ``app.http.HttpServer`` (of the
``app`` package in DIR, default this checkout, so that two versions can be compared) on a free
port of 127.0.0.1 with probes that always answer, and measures:

* threads held: ``threading.active_count()`` minus the count before the server started, after
  40 and after 1,000 idle connections (connected, nothing sent) had 0.5 s to be accepted, again
  after one ``/healthz`` (a handler thread may have started), and how long that ``/healthz`` took
  to answer meanwhile (5 s timeout);
* a burst of 50 non-blocking ``connect()`` calls sent back to back: how many took more than 0.5 s
  to complete (a SYN dropped because the listen backlog was full is retried after 1 s);
* ``stop()``: its duration over ``--rounds`` servers, each stopped after one request.

It asserts nothing; it prints one JSON document. The client side uses no threads (non-blocking
sockets and ``select``), so every thread counted is the server's.
"""

from __future__ import annotations

import argparse
import inspect
import json
import resource
import select
import socket
import statistics
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from tools.waiting import poll_until

OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _server(app_src: Path) -> Any:
    sys.path.insert(0, str(app_src))
    from prometheus_client import CollectorRegistry  # noqa: PLC0415

    from app.http import Endpoints, HttpServer  # noqa: PLC0415

    def probe() -> tuple[bool, str]:
        return True, "fine"

    def make() -> Any:
        # The app before issue 10 had no /leader probe: pass it only where it is asked for.
        leading = (probe,) if "leading" in inspect.signature(Endpoints).parameters else ()
        return HttpServer("127.0.0.1", 0, Endpoints(CollectorRegistry(), dict, probe, probe, *leading))

    return make


def _healthz(port: int) -> float | str:
    started = time.monotonic()
    try:
        with OPENER.open(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            response.read()
    except OSError as exc:
        return f"failed: {exc}"
    return round(time.monotonic() - started, 4)


def _open_idle(port: int, count: int) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sockets.append(sock)
    return sockets


def _burst(port: int, count: int) -> list[float]:
    """Seconds each of ``count`` back-to-back non-blocking connects took to complete."""
    pending: dict[socket.socket, float] = {}
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        pending[sock] = time.monotonic()
    done: list[float] = []
    deadline = time.monotonic() + 10
    opened = list(pending)
    while pending and time.monotonic() < deadline:
        _r, writable, _x = select.select([], list(pending), [], 0.05)
        now = time.monotonic()
        for sock in writable:
            done.append(now - pending.pop(sock))
    for sock in opened:
        sock.close()
    return done + [float("inf")] * len(pending)


def _settle(baseline: int) -> None:
    """Wait (2 s at most) for the threads of the previous server to end."""
    poll_until(lambda: threading.active_count() <= baseline, time.monotonic() + 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app-src", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args(argv)
    _raise_nofile()
    make = _server(args.app_src)
    result: dict[str, Any] = {"app_src": str(args.app_src)}

    baseline = threading.active_count()
    for idle in (40, 1000):
        _settle(baseline)
        http = make()
        http.start()
        sockets = _open_idle(http.port, idle)
        time.sleep(0.5)  # let the server accept them all
        idle_threads = threading.active_count() - baseline
        healthz = _healthz(http.port)
        result[f"idle_{idle}"] = {
            "threads_held": idle_threads,
            "threads_after_a_request": threading.active_count() - baseline,
            "healthz_seconds": healthz,
        }
        for sock in sockets:
            sock.close()
        http.stop()

    http = make()
    http.start()
    times = _burst(http.port, 50)
    result["burst_50"] = {
        "waited_over_0_5s": sum(1 for t in times if t > 0.5),
        "max_seconds": round(max(times), 4),
    }
    http.stop()

    stops = []
    for _ in range(args.rounds):
        http = make()
        http.start()
        _healthz(http.port)
        started = time.monotonic()
        http.stop()
        stops.append(time.monotonic() - started)
    result["stop_seconds"] = {
        "p50": round(statistics.median(stops), 4),
        "max": round(max(stops), 4),
        "rounds": len(stops),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
