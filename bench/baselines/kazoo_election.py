"""Baseline contender: kazoo's ``Election`` recipe, as bare as it comes.

    python bench/baselines/kazoo_election.py --zk HOST:PORT --path /bench/x --identity c1 \
        --file-dir DIR [--session-timeout 4]

Each process is one contender: ``Election(client, path, identity).run(lead)``. The recipe is
kazoo's lock: every contender creates an ephemeral sequential node under ``path`` and watches only
its predecessor; the lowest node leads. ``lead`` notes the time first, then writes one leader file
(epoch = the sequence number of its lock node) and waits.

SIGTERM/SIGINT closes the session (the server deletes our lock node, which wakes only our
successor) and exits 0: the same way out as ``election run``.
"""

from __future__ import annotations

import threading
import time

from _contender import connect, leave, parser
from _leaderfile import write_leader_file


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    client, stop = connect(args)
    election = client.Election(args.path, args.identity)

    def lead() -> None:
        started = time.time()
        node = election.lock.node or ""
        epoch = int(node[-10:]) if node[-10:].isdigit() else 0
        write_leader_file(args.file_dir, epoch, 0, args.identity, started)
        # Never return: returning would release the lock (a delete) while main() closes the
        # session; leaving must be the session close alone, as for the app.
        threading.Event().wait()

    threading.Thread(target=election.run, args=(lead,), name="election", daemon=True).start()
    leave(client, stop)


if __name__ == "__main__":
    main()
