"""What the kazoo baseline contenders share: their command line, their session, and their way out.

Every contender takes ``--zk --path --identity --file-dir --session-timeout`` (plus its own
options), connects one kazoo session, and on SIGTERM/SIGINT closes that session and exits 0: the
same way out as ``election run``, so that hand-overs are timed alike.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from pathlib import Path

from kazoo.client import KazooClient


def parser(description: str) -> argparse.ArgumentParser:
    """The options every contender takes; add its own before ``parse_args``."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--zk", required=True)
    p.add_argument("--path", required=True)
    p.add_argument("--identity", required=True)
    p.add_argument("--file-dir", type=Path, required=True)
    p.add_argument("--session-timeout", type=float, default=4.0)
    return p


def connect(args: argparse.Namespace) -> tuple[KazooClient, threading.Event]:
    """Start the session; the event is set by SIGTERM or SIGINT."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    client = KazooClient(hosts=args.zk, timeout=args.session_timeout)
    client.start(timeout=30)
    return client, stop


def leave(client: KazooClient, stop: threading.Event) -> None:
    """Wait for the signal, close the session (the server deletes our ephemeral nodes), exit 0."""
    stop.wait()
    client.stop()
    client.close()
    os._exit(0)
