"""Free TCP ports on the loopback: the one place the kit, the tests and the bench pick them.

A port found free can be taken by somebody else before the process that was meant to use it binds
it; every user here binds within milliseconds, on a machine where nothing else picks ports, so the
race is accepted rather than designed around (the alternative, passing bound sockets to children,
is not something ZooKeeper or ``election`` accept).
"""

from __future__ import annotations

import socket
from contextlib import ExitStack

HOST = "127.0.0.1"


def free_ports(count: int, host: str = HOST) -> list[int]:
    """``count`` distinct ports free on ``host`` (all held open until all are picked)."""
    with ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def free_port(host: str = HOST) -> int:
    """One port free on ``host``."""
    return free_ports(1, host)[0]


def port_free(port: int, host: str = HOST) -> bool:
    """True if nothing listens on ``host:port`` (TIME_WAIT leftovers don't count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True
