"""``make demo``: a real local ZooKeeper and several real replicas, with a live view of who leads.

Everything runs on this machine: ZooKeeper from Debian's jars (``tools.zookeeper``) and ``election run``
processes talking to it, writing into ``.demo/files``. The view refreshes twice a second from each
replica's ``/status`` endpoint and the directory. Kill a replica to watch the hand-over (the demo
restarts exited replicas after a moment, as Kubernetes would); Ctrl-C stops everything gracefully.

    python -m tools.demo [--replicas 3] [--leader-timeout 2s] [--duration 0] [--plain]
    python -m tools.demo --exec examples/exec/fenced-writer.sh [--exec-stop-timeout 1s]

With ``--exec`` the leader runs that command instead of writing files (``election run --exec``); each
replica gets ``FENCED_DIR`` (the demo's ``files`` directory, for the example's fenced journal) and the
virtualenv's ``bin`` first on ``PATH`` (so the command finds ``election``), and the view shows where
the command runs and the journal's last lines.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from tools import leader_files
from tools.ports import free_port
from tools.replicas import Replica, run_command
from tools.waiting import WaitTimeoutError
from tools.zookeeper import LocalZooKeeper, java_available

RESTART_AFTER = 3.0
STATUS_TIMEOUT = 0.5  # a replica that takes longer shows as silent; the view refreshes twice a second


JOURNAL = "journal.txt"  # what examples/exec/fenced-writer.sh appends to, in FENCED_DIR


def _work(st: dict[str, Any]) -> str:
    work = st.get("work") or {}
    if work.get("kind") != "exec":
        return ""
    return f"  command pid {work['pid']} epoch {work['epoch']}" if work.get("running") else "  command -"


def _render(zk: LocalZooKeeper, replicas: list[Replica], file_dir: Path, capacity: int | None) -> str:
    """The view; ``capacity`` None: the leader runs a command, so there are no leader files to list."""
    lines = [
        f"election demo  ZooKeeper {zk.address}  file-dir {file_dir}  (Ctrl-C stops everything)",
        "",
        f"{'replica':<11} {'pid':>7}  {'state':<10} {'leader':<11} {'zookeeper':<10} status",
    ]
    statuses = [(rep, rep.status(STATUS_TIMEOUT)) for rep in replicas]
    for rep, st in statuses:
        pid = rep.proc.pid if rep.proc is not None else 0
        if st is None:
            why = f"exited ({rep.returncode})" if rep.exited_at is not None else "starting"
            lines.append(f"{rep.identity:<11} {pid:>7}  {why}")
            continue
        leader = st.get("leader") or {}
        lines.append(
            f"{rep.identity:<11} {pid:>7}  {st['state']:<10} {leader.get('identity', '-'):<11} "
            f"{st['zookeeper']['state']:<10} http://127.0.0.1:{rep.port}/status{_work(st)}"
        )
    files = leader_files.names(file_dir) if capacity is not None else []
    if capacity is not None:
        lines += ["", f"files in {file_dir}: {len(files)} (capacity {capacity})"]
    for name in files[-3:]:
        try:
            rec = leader_files.read(file_dir / name)
        except ValueError:
            continue
        if rec is not None:
            lines.append(f"  {name}  {rec.identity} epoch {rec.epoch} seq {rec.sequence}")
    journal = file_dir / JOURNAL
    if journal.exists():
        entries = journal.read_text(errors="replace").splitlines()
        lines += ["", f"{journal}: {len(entries)} lines"] + [f"  {entry}" for entry in entries[-3:]]
    leader_pid = next(
        (
            r.pid
            for r in replicas
            if r.proc is not None and (r.status(STATUS_TIMEOUT) or {}).get("state") == "Leader"
        ),
        None,
    )
    if leader_pid:
        lines += [
            "",
            f"try: kill -TERM {leader_pid}  (graceful hand-over)",
            f"     kill -KILL {leader_pid}  (crash fail-over)",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--leader-timeout", default="2s")
    parser.add_argument("--attempter-timeout", default="10s")
    parser.add_argument("--storage-capacity", type=int, default=5)
    parser.add_argument("--session-timeout", default="4s")
    parser.add_argument("--workdir", type=Path, default=Path(".demo"))
    parser.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0: never)")
    parser.add_argument("--plain", action="store_true", help="print the view when it changes; no redraw")
    parser.add_argument("--exec", dest="command", help="the leader runs this command, not the file writer")
    # The demo's servers grant at most 4 s (tickTime 200 ms): the app's 3 s default cannot fit the lease.
    parser.add_argument("--exec-stop-timeout", default="1s", help="with --exec: SIGTERM -> SIGKILL grace")
    args = parser.parse_args(argv)

    reason = java_available()
    if reason is not None:
        print(f"demo: {reason} (run scripts/bootstrap.sh)", file=sys.stderr)
        return 1
    workdir: Path = args.workdir.resolve()
    shutil.rmtree(workdir, ignore_errors=True)
    file_dir = workdir / "files"
    file_dir.mkdir(parents=True)
    plain = args.plain or not sys.stdout.isatty()

    stop = {"now": False}

    def on_signal(_signum: int, _frame: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    zk = LocalZooKeeper(workdir / "zookeeper", tick_ms=200)
    zk.start()
    env = dict(os.environ)
    if args.command:
        env["FENCED_DIR"] = str(file_dir)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    replicas = []
    for i in range(1, args.replicas + 1):
        port = free_port()
        name = f"replica-{i}"
        settings = {
            "zk-servers": zk.address, "identity": name, "http-address": f"127.0.0.1:{port}",
            "file-dir": str(file_dir), "leader-timeout": args.leader_timeout,
            "attempter-timeout": args.attempter_timeout, "storage-capacity": str(args.storage_capacity),
            "zk-session-timeout": args.session_timeout, "log-format": "text",
        }  # fmt: skip
        if args.command:
            settings |= {"exec": args.command, "exec-stop-timeout": args.exec_stop_timeout}
        log = workdir / f"{name}.log"
        replicas.append(Replica(name, port, run_command(settings), log, settings, cwd=Path.cwd(), env=env))
    for rep in replicas:
        rep.start()
    print(f"demo: logs in {workdir}/replica-*.log", flush=True)

    deadline = time.monotonic() + args.duration if args.duration > 0 else None
    shown = ""
    try:
        while not stop["now"] and (deadline is None or time.monotonic() < deadline):
            for rep in replicas:
                if rep.exited() and time.monotonic() - (rep.exited_at or 0.0) > RESTART_AFTER:
                    rep.start()  # as a StatefulSet would
            view = _render(zk, replicas, file_dir, None if args.command else args.storage_capacity)
            if view != shown:
                if plain:
                    print(view + "\n", flush=True)
                else:
                    print("\033[H\033[2J" + view, flush=True)
                shown = view
            time.sleep(0.5)  # refresh period of a human-facing view
    finally:
        for rep in replicas:
            if rep.alive:
                rep.send(signal.SIGTERM)
        codes: list[int | None] = []
        for rep in replicas:
            try:
                codes.append(rep.wait_exit(25))
            except WaitTimeoutError:  # it was SIGKILLed
                codes.append(rep.returncode)
        zk.stop()
        print(f"demo: stopped; replicas exited with {codes}", flush=True)
    return 0 if all(code == 0 for code in codes) else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
