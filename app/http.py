"""The HTTP endpoints, as a small WSGI router in front of prometheus-client's exposition.

* ``/metrics``: the injected registry in Prometheus text format.
* ``/healthz``: liveness. 200 while the state machine makes progress (its heartbeat is younger than
  ``stall_after`` seconds); 503 otherwise, so that Kubernetes restarts a wedged replica.
* ``/readyz``: readiness. 200 while connected to ZooKeeper and not stopping.
* ``/leader``: 200 only while this replica leads and its work runs; 503 otherwise (for load
  balancers and Services that must reach the leader, like Patroni's ``/primary``). Readiness does
  not depend on it, so that rollouts never wait on an election.
* ``/status``: JSON: identity, state, state_since, leader, ZooKeeper connection state.

The server (:class:`HttpServer`) is built for a port that load balancers probe and that anyone on
the network may hold connections to:

* One thread waits on every connection with ``selectors``: it accepts, reads each request head
  (non-blocking) and hands only a *complete* request to one of a few handler threads. An idle or
  slow client occupies a file descriptor and a few bytes, never a thread: 1,000 idle connections
  cost no thread and do not delay ``/healthz``.
* A connection that has not sent a complete request head within ``request_timeout`` is closed;
  so is one whose head exceeds ``MAX_HEAD_BYTES``. When ``max_connections`` are open, a new one
  closes the oldest idle one (probes keep getting in). A handler writes under ``write_timeout``.
* The listen backlog is ``BACKLOG`` (bounded by ``net.core.somaxconn``), not socketserver's 5,
  with which every sixth connection of a burst waited a second for a SYN retry.
* One request per connection (HTTP/1.0 semantics, as before): the handler closes it after the
  response.

Handlers only read what other threads wrote.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import logging
import queue
import resource
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import CollectorRegistry, make_wsgi_app

log = logging.getLogger("election.http")

StartResponse = Callable[..., Any]
Environ = dict[str, Any]

# Queued connections the kernel holds for us; listen() is capped by net.core.somaxconn anyway, but
# reading it says in the log what we really got.
BACKLOG = 1024
# Handler threads: requests are answered from memory (and /status from a 0.25 s cache), so a few
# threads answer hundreds of requests a second; more would only compete for the GIL.
WORKERS = 4
# Complete requests waiting for a handler; beyond this one is answered 503 at once by the
# selector thread (its small response fits an empty socket buffer, so sending it cannot block).
QUEUED_REQUESTS = 256
# A request head bigger than this is not one of ours: close.
MAX_HEAD_BYTES = 16 * 1024
# Seconds a connection may take to send its request head (from accept), and a handler may wait
# on one send of its response.
REQUEST_TIMEOUT = 10.0
WRITE_TIMEOUT = 5.0
# Connections open at most; also bounded by RLIMIT_NOFILE minus what the rest of the process
# needs (ZooKeeper, files, logs): FDS_RESERVED.
MAX_CONNECTIONS = 4096
FDS_RESERVED = 128
# Out of file descriptors with nothing of ours to close: accept again after this pause (the
# listener would otherwise stay readable and spin the loop). Also the pause after a bug in the loop.
ACCEPT_PAUSE = 0.05
_SOMAXCONN = Path("/proc/sys/net/core/somaxconn")
_BUSY = (
    b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
    b"Content-Length: 42\r\n\r\n"
    b'{"ok": false, "reason": "server too busy"}'
)


def backlog() -> int:
    """BACKLOG, bounded by the kernel's ``net.core.somaxconn`` where it can be read."""
    try:
        return max(1, min(BACKLOG, int(_SOMAXCONN.read_text())))
    except (OSError, ValueError):
        return BACKLOG


def connection_budget() -> int:
    """How many connections the server may hold open: MAX_CONNECTIONS, bounded by the soft
    RLIMIT_NOFILE less FDS_RESERVED (at least 16)."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(16, min(MAX_CONNECTIONS, soft - FDS_RESERVED))


class _Listener(WSGIServer):
    """The bound, listening socket and the WSGI environment; its own loop is never run."""

    allow_reuse_address = True
    request_queue_size = BACKLOG

    def __init__(self, address: tuple[str, int], queue_size: int) -> None:
        self.request_queue_size = queue_size
        super().__init__(address, WSGIRequestHandler)  # unused: HttpServer makes the _Handlers


class _Handler(WSGIRequestHandler):
    """Answers one request whose head the selector thread has read already."""

    def __init__(self, head: bytes, sock: socket.socket, address: Any, server: _Listener) -> None:
        self._head = head
        super().__init__(sock, address, server)

    def setup(self) -> None:
        self.connection = self.request
        self.connection.settimeout(WRITE_TIMEOUT)
        self.rfile = io.BytesIO(self._head)
        self.wfile = self.connection.makefile("wb")  # flushed and closed by finish()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format, *args)


def _json(start_response: StartResponse, status: str, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body, indent=None).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


class Endpoints:
    """The WSGI app. ``status`` returns the /status document; ``live``, ``ready`` and ``leading``
    answer /healthz, /readyz and /leader as ``(ok, reason)``."""

    def __init__(
        self,
        registry: CollectorRegistry,
        status: Callable[[], dict[str, Any]],
        live: Callable[[], tuple[bool, str]],
        ready: Callable[[], tuple[bool, str]],
        leading: Callable[[], tuple[bool, str]],
    ) -> None:
        self._metrics = make_wsgi_app(registry)
        self._status = status
        self._probes = {"/healthz": live, "/readyz": ready, "/leader": leading}

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            return self._metrics(environ, start_response)  # type: ignore[no-any-return]
        if path == "/status":
            return _json(start_response, "200 OK", self._status())
        probe = self._probes.get(path)
        if probe is not None:
            ok, why = probe()
            return _json(
                start_response, "200 OK" if ok else "503 Service Unavailable", {"ok": ok, "reason": why}
            )
        return _json(
            start_response,
            "404 Not Found",
            {
                "error": f"no such path {path}",
                "paths": ["/metrics", "/healthz", "/readyz", "/leader", "/status"],
            },
        )


class HttpServer:
    """Serves an app on ``host:port`` (``port`` 0 picks a free one) from one selector thread and
    at most ``workers`` handler threads, however many connections are open.

    Guarantees: a connection costs a thread only while its complete request is answered; one that
    sends no complete request head within ``request_timeout`` seconds of its accept is closed; at
    most ``max_connections`` (default :func:`connection_budget`) are held, the oldest idle one being
    closed for a new one; :meth:`stop` returns once the port is closed (new connections are
    refused) without waiting for requests being answered.
    """

    def __init__(
        self,
        host: str,
        port: int,
        app: Endpoints,
        *,
        request_timeout: float = REQUEST_TIMEOUT,
        workers: int = WORKERS,
        max_connections: int | None = None,
    ) -> None:
        self._listener = _Listener((host, port), backlog())
        self._listener.set_app(app)
        self._listener.socket.setblocking(False)
        self.port = self._listener.server_port
        self._request_timeout = request_timeout
        self._max_workers = workers
        self._max_connections = max_connections or connection_budget()
        self._selector = selectors.DefaultSelector()
        # stop() writes a byte here, so that the selector thread leaves at once, not at its next poll.
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._wake_writer.setblocking(False)
        # Connections whose request head is still being read, in accept order (so in deadline
        # order: every deadline is its accept time plus the same timeout): (deadline, head so far).
        self._pending: dict[socket.socket, tuple[float, bytearray]] = {}
        self._requests: queue.Queue[tuple[socket.socket, Any, bytes] | None] = queue.Queue(QUEUED_REQUESTS)
        self._workers: list[threading.Thread] = []
        self._idle_workers = 0
        self._workers_lock = threading.Lock()
        self._accept_paused_until: float | None = None  # out of file descriptors: retry then
        self._stopping = False
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Close the port and every connection not yet handed to a handler; return promptly.

        A request a handler is answering finishes on its (daemon) thread or dies with the process.
        """
        if self._closed:
            return
        self._stopping = True
        with contextlib.suppress(OSError):
            self._wake_writer.send(b"\0")
        if self._thread.is_alive():
            self._thread.join()
        self._closed = True
        for sock in list(self._pending):
            self._drop(sock)
        self._listener.server_close()
        self._selector.close()
        self._wake_reader.close()
        self._wake_writer.close()
        with self._workers_lock:
            for _ in self._workers:
                with contextlib.suppress(queue.Full):
                    self._requests.put_nowait(None)

    # -- the selector thread ----------------------------------------------------------------
    def _serve(self) -> None:
        selector = self._selector
        selector.register(self._listener.socket, selectors.EVENT_READ, "listen")
        selector.register(self._wake_reader, selectors.EVENT_READ, "wake")
        while not self._stopping:
            try:
                self._serve_once(selector)
            except Exception:  # a bug must not end the thread: /healthz would fail for good
                log.exception("HTTP server loop failed; going on")
                time.sleep(ACCEPT_PAUSE)

    def _serve_once(self, selector: selectors.BaseSelector) -> None:
        events = selector.select(self._select_timeout(time.monotonic()))
        now = time.monotonic()
        for key, _mask in events:
            if key.data == "listen":
                self._accept(now)
            elif key.data == "conn":
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock in self._pending:  # not dropped by an accept earlier in this round
                    self._read(sock)
        self._expire(now)
        if self._accept_paused_until is not None and now >= self._accept_paused_until:
            self._accept_paused_until = None
            selector.register(self._listener.socket, selectors.EVENT_READ, "listen")

    def _select_timeout(self, now: float) -> float | None:
        """How long the selector may sleep: until the oldest unfinished request head's deadline
        (the first in accept order) or the end of an accept pause, whichever comes first; None (until
        a socket is ready) when neither is pending. An idle replica's HTTP thread so never wakes by
        itself (docs/BENCHMARKS.md, "Idle cost"); stop() wakes it through the socket pair."""
        oldest = next(iter(self._pending.values()), None)
        deadlines = [] if oldest is None else [oldest[0]]
        if self._accept_paused_until is not None:
            deadlines.append(self._accept_paused_until)
        return max(0.0, min(deadlines) - now) if deadlines else None

    def _accept(self, now: float) -> None:
        """Accept what the backlog holds (a slice of it at most, so reads are not starved)."""
        for _ in range(256):
            try:
                sock, _address = self._listener.socket.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    if self._pending:  # make room: the oldest idle connection goes
                        self._drop(next(iter(self._pending)))
                        continue
                    # Nothing of ours to close: stop accepting for a pause (the listener would
                    # otherwise stay readable and spin this loop).
                    log.warning("cannot accept HTTP connections: %s", exc.strerror or exc)
                    self._selector.unregister(self._listener.socket)
                    self._accept_paused_until = now + ACCEPT_PAUSE
                    return
                log.debug("accept failed: %s", exc)  # e.g. ECONNABORTED: that client is gone
                continue
            sock.setblocking(False)
            if len(self._pending) >= self._max_connections:
                self._drop(next(iter(self._pending)))
            self._pending[sock] = (now + self._request_timeout, bytearray())
            self._selector.register(sock, selectors.EVENT_READ, "conn")

    def _read(self, sock: socket.socket) -> None:
        """Read what ``sock`` sent; hand it to a handler once its request head is complete."""
        try:
            data = sock.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            self._drop(sock)
            return
        if not data:  # the client closed before sending a request
            self._drop(sock)
            return
        head = self._pending[sock][1]
        head += data
        if b"\r\n\r\n" not in head and b"\n\n" not in head:
            if len(head) > MAX_HEAD_BYTES:
                self._drop(sock)
            return
        self._selector.unregister(sock)
        del self._pending[sock]
        self._dispatch(sock, bytes(head))

    def _expire(self, now: float) -> None:
        """Close the connections past their deadline (they are first in the accept order)."""
        while self._pending:
            sock, (deadline, _head) = next(iter(self._pending.items()))
            if deadline > now:
                return
            self._drop(sock)

    def _drop(self, sock: socket.socket) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(sock)
        self._pending.pop(sock, None)
        sock.close()

    def _dispatch(self, sock: socket.socket, head: bytes) -> None:
        try:
            address = sock.getpeername()
            self._requests.put_nowait((sock, address, head))
        except OSError:
            sock.close()
            return
        except queue.Full:
            with contextlib.suppress(OSError):
                sock.send(_BUSY)
            sock.close()
            return
        with self._workers_lock:
            if self._idle_workers < self._requests.qsize() and len(self._workers) < self._max_workers:
                worker = threading.Thread(target=self._work, name=f"http-{len(self._workers)}", daemon=True)
                self._workers.append(worker)
                self._idle_workers += 1
                worker.start()

    # -- the handler threads ----------------------------------------------------------------
    def _work(self) -> None:
        """A handler thread: answer requests from the queue until a None (stop) comes."""
        while True:
            item = self._requests.get()
            with self._workers_lock:
                self._idle_workers -= 1
            if item is None:
                return
            sock, address, head = item
            try:
                _Handler(head, sock, address, self._listener)
            except Exception:  # a client that went away mid-response, a write timeout
                log.debug("HTTP request from %s failed", address, exc_info=True)
            finally:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_WR)
                sock.close()
            with self._workers_lock:
                self._idle_workers += 1
