"""Review harness: a local ZooKeeper, a Cluster of real `python -m app run` replicas, and helpers
to run `election switchover` / `status --history` and to read the raw nodes with kazoo."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kazoo.client import KazooClient  # noqa: E402

from tests.e2e.cluster import Cluster, poll  # noqa: E402,F401
from tools.localzk import LocalZooKeeper  # noqa: E402

PATH = "/review"


@contextmanager
def cluster(**settings: str) -> Iterator[tuple[Cluster, LocalZooKeeper, Path]]:
    with tempfile.TemporaryDirectory(prefix="r11-") as tmp:
        work = Path(tmp)
        with LocalZooKeeper(work / "zk") as zk:
            c = Cluster(work, zk.address, PATH, **settings)
            try:
                yield c, zk, work
            finally:
                c.kill_all()


def cli(c: Cluster, *args: str, timeout: float = 120) -> tuple[int, str, str, float]:
    t0 = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-m", "app", *args, f"--zk-servers={c.zk_servers}", f"--election-path={c.election_path}"],
        cwd=ROOT, env=c.env, capture_output=True, text=True, timeout=timeout, check=False,
    )
    return r.returncode, r.stdout.strip(), r.stderr.strip(), time.monotonic() - t0


def zk_client(c: Cluster) -> KazooClient:
    k = KazooClient(hosts=c.zk_servers)
    k.start(10)
    return k


def raw(k: KazooClient, name: str) -> Any:
    data, _ = k.get(f"{PATH}/{name}")
    return json.loads(data or b"{}")


def leader_node(k: KazooClient) -> dict[str, Any] | None:
    st = k.exists(f"{PATH}/leader")
    if st is None:
        return None
    data, st = k.get(f"{PATH}/leader")
    return {**json.loads(data), "epoch": st.czxid, "owner": st.ephemeralOwner}
