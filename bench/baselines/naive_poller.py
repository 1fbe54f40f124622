"""Baseline contender: a naive poller that tries to ``create`` the leader node every second.

    python bench/baselines/naive_poller.py --zk HOST:PORT --path /bench/x --identity c1 \
        --file-dir DIR [--period 1.0] [--session-timeout 4]

No watch at all: every ``period`` (on a fixed grid from its own start, so contenders are out of
phase) it tries to create the ephemeral ``<path>/leader``. The one that succeeds notes the time,
writes one leader file (epoch = the node's czxid) and stops polling. Each contender registers an
ephemeral ``<path>/members/m-<identity>-`` so the benchmark can count who is up.

SIGTERM/SIGINT closes the session and exits 0.
"""

from __future__ import annotations

import time

from _contender import connect, leave, parser
from _leaderfile import write_leader_file
from kazoo.exceptions import NodeExistsError


def main() -> None:
    options = parser(__doc__.splitlines()[0])
    options.add_argument("--period", type=float, default=1.0)
    args = options.parse_args()
    client, stop = connect(args)
    client.ensure_path(f"{args.path}/members")
    client.create(f"{args.path}/members/m-{args.identity}-", b"", ephemeral=True, sequence=True)

    start = time.monotonic()
    tick = 0
    while not stop.is_set():
        try:
            _path, stat = client.create(
                f"{args.path}/leader", args.identity.encode(), ephemeral=True, include_data=True
            )
        except NodeExistsError:
            tick += 1
            stop.wait(max(0.0, start + tick * args.period - time.monotonic()))
            continue
        write_leader_file(args.file_dir, stat.czxid, 0, args.identity, time.time())
        break
    leave(client, stop)


if __name__ == "__main__":
    main()
