"""A TCP relay that can black-hole one replica's path to ZooKeeper: a network cut without root.

``zk-servers`` of the replica points at the relay. :meth:`Relay.cut` makes it a black hole: bytes
in either direction are read and dropped, an upstream close is not passed on, new connections are
accepted and never forwarded, so the client sees exactly what a partition looks like (silence) and
the server stops hearing pings. :meth:`Relay.heal` closes whatever was black-holed (as the
server's reset would once packets flow again) and forwards new connections normally.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading


class Relay:
    def __init__(self, target: str) -> None:
        host, _, port = target.rpartition(":")
        self.target = (host, int(port))
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = int(self._listener.getsockname()[1])
        self._cut = threading.Event()
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._generation = 0  # bumped at each heal: connections of an older cut are closed
        threading.Thread(target=self._accept, name=f"relay-{self.port}", daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def is_cut(self) -> bool:
        return self._cut.is_set()

    def cut(self) -> None:
        self._cut.set()

    def heal(self) -> None:
        with self._lock:
            self._generation += 1
            self._cut.clear()

    def close(self) -> None:
        self._closing.set()
        with contextlib.suppress(OSError):
            self._listener.close()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:  # noqa: PLR0912 - one relay loop
        upstream: socket.socket | None = None
        with self._lock:
            generation = self._generation
        if not self._cut.is_set():
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                return
        peers = {client: upstream, upstream: client} if upstream else {client: None}
        poisoned = False  # saw traffic dropped: this connection ends at heal
        try:
            while not self._closing.is_set():
                if self._cut.is_set():
                    poisoned = True
                elif poisoned or upstream is None or self._generation != generation:
                    return  # healed: close what the cut broke
                sockets = [s for s in peers if s is not None]
                readable, _, _ = select.select(sockets, [], [], 0.05)
                for sock in readable:
                    try:
                        data = sock.recv(65536)
                    except OSError:
                        data = b""
                    if self._cut.is_set():
                        if not data:
                            peers.pop(sock, None)  # silent: the other side hears nothing
                        continue
                    if not data:
                        return
                    other = peers.get(sock)
                    if other is not None:
                        other.sendall(data)
        except OSError:
            return
        finally:
            for sock in (client, upstream):
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.close()
