"""The HTTP endpoints, as a small WSGI router in front of prometheus-client's exposition.

* ``/metrics``: the injected registry in Prometheus text format.
* ``/healthz``: liveness. 200 while the state machine makes progress (its heartbeat is younger than
  ``stall_after`` seconds); 503 otherwise, so that Kubernetes restarts a wedged replica.
* ``/readyz``: readiness. 200 while connected to ZooKeeper and not stopping.
* ``/status``: JSON: identity, state, state_since, leader, ZooKeeper connection state.

The server runs on its own daemon thread; handlers only read what other threads wrote.
"""

from __future__ import annotations

import contextlib
import json
import logging
import selectors
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

log = logging.getLogger("election.http")

# How long stop() waits for the serving thread (it only has to notice one byte; a daemon anyway).
STOP_TIMEOUT = 5.0

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
    """Serves an app on ``host:port`` from a daemon thread; ``port`` 0 picks a free one.

    The thread sleeps in ``select`` until a request or :meth:`stop` arrives (a byte on a socket
    pair): an idle replica's HTTP thread costs no wake-ups, and stopping takes no polling delay.
    """

    def __init__(self, host: str, port: int, app: Endpoints) -> None:
        self._server = make_server(host, port, app, server_class=_Server, handler_class=_QuietHandler)
        self.port = self._server.server_port
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._thread = threading.Thread(target=self._serve, name="http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_writer.send(b"x")
        if self._thread.is_alive():
            self._thread.join(STOP_TIMEOUT)
        self._server.server_close()
        self._wake_reader.close()
        self._wake_writer.close()

    def _serve(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._server, selectors.EVENT_READ)
            selector.register(self._wake_reader, selectors.EVENT_READ)
            while True:
                ready = {key.fileobj for key, _events in selector.select()}
                if self._wake_reader in ready:
                    return
                # The listening socket is readable: accept one connection and hand it to a
                # handler thread (ThreadingMixIn), exactly as serve_forever would.
                self._server.handle_request()
