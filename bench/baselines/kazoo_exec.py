"""Anchor of the exec benchmark: ``etcdctl lock``'s wrapper pattern done with kazoo's ``Election``.

    python bench/baselines/kazoo_exec.py --zk HOST:PORT --path /bench/x --identity c1 \
        --file-dir DIR [--session-timeout 4] [--stop-timeout 1] -- COMMAND ARGS...

One contender: ``Election(client, path, identity).run(lead)``, where ``lead`` starts COMMAND and
waits for it (the recipe's leader function *is* the work). The command gets the lock node's name in
``KAZOO_LOCK_NODE`` (its sequence number is the nearest thing the recipe has to a fencing token).
If the command exits by itself the recipe releases the lock and this contender queues again.

On SIGTERM/SIGINT it does what a careful wrapper does: SIGTERM to the command, SIGKILL after
``--stop-timeout``, and only then closes the session, so that a graceful hand-over never overlaps.
What it does *not* do is anything the recipe does not offer: nothing watches the connection, so a
leader cut off from ZooKeeper keeps its command running (kazoo's ``Election`` never interrupts the
leader function, not on SUSPENDED nor on LOST). That is what the benchmark measures.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

from _contender import connect, parser


def main() -> None:
    argv = sys.argv[1:]
    if "--" not in argv:
        raise SystemExit("kazoo_exec.py: give the command after --")
    at = argv.index("--")
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--stop-timeout", type=float, default=1.0)
    args = p.parse_args(argv[:at])
    command = argv[at + 1 :]
    client, stop = connect(args)
    election = client.Election(args.path, args.identity)
    running: list[subprocess.Popen[bytes]] = []

    def lead() -> None:
        env = dict(os.environ, KAZOO_LOCK_NODE=election.lock.node or "")
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, env=env)
        running.append(child)
        child.wait()
        running.remove(child)

    def contend() -> None:
        while not stop.is_set():
            election.run(lead)

    threading.Thread(target=contend, name="election", daemon=True).start()
    stop.wait()
    for child in list(running):
        child.terminate()
        try:
            child.wait(args.stop_timeout)
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGKILL)
            child.wait()
    client.stop()
    client.close()
    os._exit(0)


if __name__ == "__main__":
    main()
