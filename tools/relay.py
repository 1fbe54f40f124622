"""A TCP relay: one client's own path to one server, which can be cut without root and without touching
anybody else's.

A client given :attr:`Relay.address` instead of the server's reaches the server through a port of its
own. That port can be cut two ways:

- from outside, by a firewall rule on :attr:`Relay.port` (:class:`tools.faults.network.LoopbackCut`,
  as root): the relay just forwards, and the kernel drops the packets;
- from inside, by :meth:`Relay.cut` (no root): the relay becomes a black hole. Bytes in either
  direction are read and dropped, a close from either side is not passed on, connections stay open,
  new connections are accepted and never forwarded: the client hears exactly what a partition sounds
  like (silence) and the server stops hearing the client's pings. :meth:`Relay.heal` closes every
  connection the cut held (as the server's reset would once packets flow again) and forwards new
  connections normally.

Guarantees: a connection the server refuses is closed at once (the client sees what it would see
without the relay); :meth:`Relay.close` stops accepting and closes every connection; a connection's
descriptors are closed only once no thread reads them, so a descriptor is never read by the wrong
connection, and none is leaked by a long run of reconnections. No ``select``: a process of a long soak
may hold descriptors above ``FD_SETSIZE``.

A chunk already read when :meth:`Relay.cut` is called may still be delivered: a cut is as sharp as
one ``recv``, like a cable pulled mid-packet.
"""

from __future__ import annotations

import contextlib
import socket
import threading

__all__ = ["Relay"]

HOST = "127.0.0.1"


class _Connection:
    """A client's connection and, unless it was accepted while cut, its own connection upstream."""

    def __init__(self, client: socket.socket, upstream: socket.socket | None, black_holed: bool) -> None:
        self.client = client
        self.upstream = upstream
        self.black_holed = black_holed  # a cut saw it: its bytes are dropped, and heal ends it
        self.ended = False  # shut down: whichever pump stops last closes the descriptors
        self.pumps_left = 1 if upstream is None else 2

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return (self.client,) if self.upstream is None else (self.client, self.upstream)

    def shut_down(self) -> None:
        """Wake the pumps (their ``recv`` returns) without freeing the descriptors they read."""
        self.ended = True
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


class Relay:
    """Forwards ``127.0.0.1:``:attr:`port` to ``target`` (``host:port``), one thread per direction of
    each connection; :meth:`cut`/:meth:`heal` black-hole it and bring it back (see the module)."""

    def __init__(self, target: str, *, connect_timeout: float = 5.0) -> None:
        """``connect_timeout``: how long a new connection may wait for the server's handshake before
        the client's connection is closed instead."""
        host, _, port = target.rpartition(":")
        self.target = (host, int(port))
        self.connect_timeout = connect_timeout
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((HOST, 0))
        self._listener.listen(64)
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()  # guards everything below and every connection's state
        self._connections: set[_Connection] = set()
        self._cut = False
        self._closed = False
        threading.Thread(target=self._accept, name=f"relay-{self.port}", daemon=True).start()

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def is_cut(self) -> bool:
        return self._cut

    @property
    def connections(self) -> int:
        """How many connections the relay holds now, forwarded or black-holed (a client's connect
        returns before the relay has taken its connection in)."""
        with self._lock:
            return len(self._connections)

    def cut(self) -> None:
        """Black-hole every connection, open and new, until :meth:`heal`."""
        with self._lock:
            self._cut = True
            for connection in self._connections:
                connection.black_holed = True

    def heal(self) -> None:
        """Close every connection the cut held; forward new ones again."""
        with self._lock:
            self._cut = False
            for connection in [c for c in self._connections if c.black_holed]:
                self._end(connection)

    def close(self) -> None:
        """Stop accepting and close every connection (safe to call twice)."""
        with self._lock:
            self._closed = True
            for connection in list(self._connections):
                self._end(connection)
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept loop (close alone does not)
        self._listener.close()

    # -- under the lock ---------------------------------------------------------------------------

    def _end(self, connection: _Connection) -> None:
        connection.shut_down()
        if connection.pumps_left == 0:  # nobody reads it any more
            self._connections.discard(connection)
            connection.close()

    # -- threads ----------------------------------------------------------------------------------

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._open, args=(client,), daemon=True).start()

    def _open(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        if not self._cut:
            try:
                upstream = socket.create_connection(self.target, timeout=self.connect_timeout)
                upstream.settimeout(None)
            except OSError:
                client.close()  # the server is down: the client sees a closed connection, as without us
                return
        for sock in (client, upstream):
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            if self._closed:
                for sock in (client, upstream):
                    if sock is not None:
                        sock.close()
                return
            # Cut while we connected upstream: black-holed from the start, like the others.
            connection = _Connection(client, upstream, black_holed=self._cut)
            self._connections.add(connection)
        if upstream is not None:
            threading.Thread(target=self._pump, args=(connection, upstream, client), daemon=True).start()
        self._pump(connection, client, upstream)

    def _pump(self, connection: _Connection, src: socket.socket, dst: socket.socket | None) -> None:
        """Copy ``src`` to ``dst`` until ``src`` ends; drop what arrives while black-holed."""
        try:
            while data := src.recv(65536):
                if dst is not None and not connection.black_holed:
                    dst.sendall(data)
        except OSError:
            pass
        with self._lock:
            if not connection.black_holed and not connection.ended:
                connection.shut_down()  # pass the close on, and wake the other pump
            # Black-holed: silent, the other side hears nothing; heal (or close) ends the connection.
            connection.pumps_left -= 1
            done = connection.pumps_left == 0 and connection.ended
            if done:
                self._connections.discard(connection)
        if done:
            connection.close()
