"""``make demo``: a real local ZooKeeper and several real replicas, with a live view of who leads.

Everything runs on this machine: ZooKeeper from Debian's jars (``tools.localzk``) and ``election run``
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
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tools.localzk import LocalZooKeeper, java_available

RESTART_AFTER = 3.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Replica:
    name: str
    port: int
    args: list[str]
    log_path: Path
    env: dict[str, str] | None = None
    proc: subprocess.Popen[bytes] | None = None
    exited_at: float | None = None
    last_status: int | None = None
    log: IO[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        self.log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT, env=self.env)
        self.exited_at = None

    def poll(self) -> None:
        if self.proc is not None and self.exited_at is None and self.proc.poll() is not None:
            self.exited_at = time.monotonic()
            self.last_status = self.proc.returncode

    def status(self) -> dict[str, Any] | None:
        if self.proc is None or self.exited_at is not None:
            return None
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/status", timeout=0.5) as resp:
                return dict(json.loads(resp.read()))
        except (OSError, ValueError):
            return None


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
    for rep in replicas:
        st = rep.status()
        pid = rep.proc.pid if rep.proc is not None else 0
        if st is None:
            why = f"exited ({rep.last_status})" if rep.exited_at is not None else "starting"
            lines.append(f"{rep.name:<11} {pid:>7}  {why}")
            continue
        leader = st.get("leader") or {}
        lines.append(
            f"{rep.name:<11} {pid:>7}  {st['state']:<10} {leader.get('identity', '-'):<11} "
            f"{st['zookeeper']['state']:<10} http://127.0.0.1:{rep.port}/status{_work(st)}"
        )
    files = sorted(p.name for p in file_dir.glob("leader-*.json")) if capacity is not None else []
    if capacity is not None:
        lines += ["", f"files in {file_dir}: {len(files)} (capacity {capacity})"]
    for name in files[-3:]:
        try:
            rec = json.loads((file_dir / name).read_text())
            lines.append(f"  {name}  {rec['identity']} epoch {rec['epoch']} seq {rec['sequence']}")
        except (OSError, ValueError, KeyError):
            continue
    journal = file_dir / JOURNAL
    if journal.exists():
        entries = journal.read_text(errors="replace").splitlines()
        lines += ["", f"{journal}: {len(entries)} lines"] + [f"  {entry}" for entry in entries[-3:]]
    leader_pid = next(
        (r.proc.pid for r in replicas if r.proc is not None and (r.status() or {}).get("state") == "Leader"),
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
        port = _free_port()
        name = f"replica-{i}"
        cmd = [
            sys.executable, "-m", "app", "run",
            f"--zk-servers={zk.address}", f"--identity={name}", f"--http-address=127.0.0.1:{port}",
            f"--file-dir={file_dir}", f"--leader-timeout={args.leader_timeout}",
            f"--attempter-timeout={args.attempter_timeout}", f"--storage-capacity={args.storage_capacity}",
            f"--zk-session-timeout={args.session_timeout}", "--log-format=text",
        ]  # fmt: skip
        if args.command:
            cmd += [f"--exec={args.command}", f"--exec-stop-timeout={args.exec_stop_timeout}"]
        replicas.append(Replica(name, port, cmd, workdir / f"{name}.log", env=env))
    for rep in replicas:
        rep.start()
    print(f"demo: logs in {workdir}/replica-*.log", flush=True)

    deadline = time.monotonic() + args.duration if args.duration > 0 else None
    shown = ""
    try:
        while not stop["now"] and (deadline is None or time.monotonic() < deadline):
            for rep in replicas:
                rep.poll()
                if rep.exited_at is not None and time.monotonic() - rep.exited_at > RESTART_AFTER:
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
            if rep.proc is not None and rep.proc.poll() is None:
                rep.proc.send_signal(signal.SIGTERM)
        codes = []
        for rep in replicas:
            if rep.proc is not None:
                try:
                    codes.append(rep.proc.wait(timeout=25))
                except subprocess.TimeoutExpired:
                    rep.proc.kill()
                    codes.append(rep.proc.wait())
        zk.stop()
        print(f"demo: stopped; replicas exited with {codes}", flush=True)
    return 0 if all(code == 0 for code in codes) else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
