"""A local etcd for the benchmark's anchor (``etcdctl lock NAME -- COMMAND``), and what it is asked.

Debian's ``etcd-server`` (3.4) run as a plain process: data dir in the scratch directory, client
and peer ports free ones on 127.0.0.1, no service. It is read through its JSON gateway (``/health``,
``/v3/kv/range``) so that the benchmark needs no gRPC client of its own.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tools.ports import free_ports


def etcd_available() -> str | None:
    """None when ``etcd`` and ``etcdctl`` are on PATH, else why not."""
    missing = [tool for tool in ("etcd", "etcdctl") if shutil.which(tool) is None]
    if missing:
        return f"no {' or '.join(missing)} on PATH (apt-get install etcd-server etcd-client)"
    return None


def prefix_end(prefix: bytes) -> bytes:
    """The ``range_end`` that makes a range request cover every key starting with ``prefix``."""
    return prefix[:-1] + bytes([prefix[-1] + 1])


class LocalEtcd:
    """One etcd member on 127.0.0.1; :meth:`stop` SIGKILLs it (its data dir is scratch)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.client_port, self.peer_port = free_ports(2)
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "etcd.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self, timeout: float = 30.0) -> None:
        """Start etcd and return once ``/health`` says so; RuntimeError (with its log) otherwise."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        client = f"http://{self.address}"
        command = [
            "etcd",
            "--name=bench",
            f"--data-dir={self.workdir / 'data'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls=http://127.0.0.1:{self.peer_port}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{self.peer_port}",
            f"--initial-cluster=bench=http://127.0.0.1:{self.peer_port}",
        ]
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = self.log_path.read_text(errors="replace").splitlines()[-20:]
                raise RuntimeError(f"etcd on {self.address} did not serve; log:\n" + "\n".join(tail))
            time.sleep(0.1)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
        if self._proc is not None:
            self._proc.wait()

    def _post(self, path: str, body: dict[str, Any], timeout: float = 2.0) -> dict[str, Any]:
        request = urllib.request.Request(
            f"http://{self.address}{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as reply:  # noqa: S310 - our own local URL
            answer: dict[str, Any] = json.loads(reply.read())
        return answer

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.address}/health", timeout=1.0) as reply:
                return bool(json.loads(reply.read()).get("health") == "true")
        except (OSError, ValueError, urllib.error.URLError):
            return False

    def count_prefix(self, prefix: str) -> int:
        """How many keys start with ``prefix`` (for ``etcdctl lock NAME``: its waiters, holder included)."""
        raw = prefix.encode()
        answer = self._post(
            "/v3/kv/range",
            {
                "key": base64.b64encode(raw).decode(),
                "range_end": base64.b64encode(prefix_end(raw)).decode(),
                "count_only": True,
            },
        )
        return int(answer.get("count", 0))
