"""The HTTP endpoints, as a small WSGI router in front of prometheus-client's exposition.

* ``/metrics``: the injected registry in Prometheus text format.
* ``/healthz``: liveness. 200 while the state machine makes progress (its heartbeat is younger than
  ``stall_after`` seconds); 503 otherwise, so that Kubernetes restarts a wedged replica.
* ``/readyz``: readiness. 200 while connected to ZooKeeper and not stopping.
* ``/status``: JSON: identity, state, state_since, leader, ZooKeeper connection state.

The server runs on its own daemon thread; handlers only read what other threads wrote.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

log = logging.getLogger("election.http")

StartResponse = Callable[..., Any]
Environ = dict[str, Any]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format, *args)


def _json(start_response: StartResponse, status: str, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body, indent=None).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


class Endpoints:
    """The WSGI app. ``status`` returns the /status document; ``live`` and ``ready`` the probes."""

    def __init__(
        self,
        registry: CollectorRegistry,
        status: Callable[[], dict[str, Any]],
        live: Callable[[], tuple[bool, str]],
        ready: Callable[[], tuple[bool, str]],
    ) -> None:
        self._metrics = make_wsgi_app(registry)
        self._status = status
        self._live = live
        self._ready = ready

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            return self._metrics(environ, start_response)  # type: ignore[no-any-return]
        if path == "/status":
            return _json(start_response, "200 OK", self._status())
        if path in ("/healthz", "/readyz"):
            ok, why = (self._live if path == "/healthz" else self._ready)()
            return _json(
                start_response, "200 OK" if ok else "503 Service Unavailable", {"ok": ok, "reason": why}
            )
        return _json(
            start_response,
            "404 Not Found",
            {"error": f"no such path {path}", "paths": ["/metrics", "/healthz", "/readyz", "/status"]},
        )


class HttpServer:
    """Serves an app on ``host:port`` from a daemon thread; ``port`` 0 picks a free one."""

    def __init__(self, host: str, port: int, app: Endpoints) -> None:
        self._server = make_server(host, port, app, server_class=_Server, handler_class=_QuietHandler)
        self.port = self._server.server_port
        # A short poll interval: shutdown() waits for the loop to notice, and that wait is part of
        # every graceful stop. (Blocking in select instead, with a socket pair to stop it, saved
        # 0.1 % of a core when idle but made the take-over 2-2.7x slower on this VM: docs/BENCHMARKS.md.)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="http", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() would wait forever for a loop that never ran
            self._server.shutdown()
        self._server.server_close()
