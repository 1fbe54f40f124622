"""The kit's TCP relay (tools/relay.py) over loopback sockets: forwarding, the black-hole cut, heal, close."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator

import pytest

from tools.relay import Relay
from tools.waiting import wait_for

# How long "nothing arrives" is watched for: a forwarded byte takes well under a millisecond here.
SILENCE = 0.3


class EchoServer:
    """Echoes every connection; records what it received and can drop its side of all connections."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self.connections: list[socket.socket] = []
        self.received = bytearray()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections.append(sock)
            threading.Thread(target=self._echo, args=(sock,), daemon=True).start()

    def _echo(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := sock.recv(65536):
                with self._lock:
                    self.received += data
                sock.sendall(data)
        sock.close()

    def accepted(self) -> int:
        with self._lock:
            return len(self.connections)

    def drop_all(self) -> None:
        with self._lock:
            for sock in self.connections:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.drop_all()
        self._listener.close()


@pytest.fixture
def server() -> Iterator[EchoServer]:
    echo = EchoServer()
    yield echo
    echo.close()


@pytest.fixture
def relay(server: EchoServer) -> Iterator[Relay]:
    relay = Relay(server.address)
    yield relay
    relay.close()


def connect(relay: Relay) -> socket.socket:
    host, _, port = relay.address.rpartition(":")
    return socket.create_connection((host, int(port)), timeout=5.0)


def answer(sock: socket.socket, timeout: float) -> bytes | None:
    """What arrives on ``sock`` within ``timeout`` (b"" for a close), None if nothing does."""
    sock.settimeout(timeout)
    try:
        return sock.recv(65536)
    except TimeoutError:
        return None
    except ConnectionResetError:
        return b""


def test_forwards_both_ways_and_passes_a_close_on(server: EchoServer, relay: Relay) -> None:
    with connect(relay) as client:
        client.sendall(b"ping")
        assert answer(client, 5.0) == b"ping"
        server.drop_all()
        assert answer(client, 5.0) == b"", "the server's close reaches the client"


def test_a_connection_the_server_refuses_is_closed_at_once() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        nobody = f"127.0.0.1:{probe.getsockname()[1]}"  # bound, not listening: connections are refused
        relay = Relay(nobody)
        try:
            with connect(relay) as client:
                assert answer(client, 5.0) == b""
        finally:
            relay.close()


def test_a_cut_is_silence_both_ways_for_open_and_new_connections(server: EchoServer, relay: Relay) -> None:
    with connect(relay) as open_before, contextlib.ExitStack() as stack:
        open_before.sendall(b"a")
        assert answer(open_before, 5.0) == b"a"
        relay.cut()
        assert relay.is_cut

        open_before.sendall(b"lost")
        assert answer(open_before, SILENCE) is None, "nothing comes back through a cut"
        opened_during = stack.enter_context(connect(relay))  # accepted, as a black hole accepts
        wait_for(lambda: relay.connections == 2, 5.0, "the relay to take the new connection in")
        opened_during.sendall(b"also lost")
        assert answer(opened_during, SILENCE) is None
        assert bytes(server.received) == b"a", "the server hears nothing through a cut"
        assert server.accepted() == 1, "a connection opened during the cut is never forwarded"
        server.drop_all()
        assert answer(open_before, SILENCE) is None, "the server's close is not passed on either"


def test_heal_closes_what_the_cut_held_and_forwards_new_connections(server: EchoServer, relay: Relay) -> None:
    with connect(relay) as open_before:
        open_before.sendall(b"a")
        assert answer(open_before, 5.0) == b"a"
        relay.cut()
        with connect(relay) as opened_during:
            wait_for(lambda: relay.connections == 2, 5.0, "the relay to take the new connection in")
            relay.heal()
            assert not relay.is_cut
            assert answer(open_before, 5.0) == b""
            assert answer(opened_during, 5.0) == b""
    with connect(relay) as after:
        after.sendall(b"back")
        assert answer(after, 5.0) == b"back"


def test_a_cut_and_heal_close_only_connections_the_cut_saw(server: EchoServer, relay: Relay) -> None:
    relay.cut()
    relay.heal()
    with connect(relay) as after:
        wait_for(lambda: relay.connections == 1, 5.0, "the relay to take the connection in")
        relay.cut()
        relay.heal()
        assert answer(after, 5.0) == b"", "held by the second cut"
        with connect(relay) as fresh:
            fresh.sendall(b"fresh")
            assert answer(fresh, 5.0) == b"fresh"


def test_close_ends_every_connection_and_refuses_new_ones(server: EchoServer, relay: Relay) -> None:
    with connect(relay) as client:
        client.sendall(b"x")
        assert answer(client, 5.0) == b"x"
        relay.close()
        assert answer(client, 5.0) == b""
    with pytest.raises(ConnectionRefusedError):
        connect(relay).close()


def test_closing_a_connection_frees_its_descriptors(server: EchoServer, relay: Relay) -> None:
    def open_descriptors() -> int:
        return len(os.listdir("/proc/self/fd"))

    before = open_descriptors()
    for _ in range(50):
        with connect(relay) as client:
            client.sendall(b"r")
            assert answer(client, 5.0) == b"r"
    wait_for(lambda: open_descriptors() <= before, 5.0, "the relay to close the connections it forwarded")


def test_forwards_on_descriptors_above_fd_setsize(server: EchoServer) -> None:
    # A long soak's process holds more than FD_SETSIZE (1024) descriptors: select() cannot watch them.
    held = [os.open("/dev/null", os.O_RDONLY) for _ in range(1100)]
    relay = Relay(server.address)
    try:
        with connect(relay) as client:
            client.sendall(b"high")
            assert answer(client, 5.0) == b"high"
    finally:
        relay.close()
        for fd in held:
            os.close(fd)
