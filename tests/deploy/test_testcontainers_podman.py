"""The ZooKeeper fixture's testcontainers path, driven through podman's Docker-compatible API.

No Docker engine runs here, so ``tests/zookeeper_fixture.py`` normally falls back to a local server
from Debian's jars. This test makes its testcontainers path run anyway:

* ``podman system service`` serves the Docker API on a private unix socket (``DOCKER_HOST``);
* ``zookeeper:3.9``, the image the fixture asks for, is a local stand-in when no registry answers
  (``scripts/image-tools.sh zookeeper-image``: Debian's ZooKeeper jars and a jlinked Java runtime on
  the stand-in base; it honours ``ZOO_TICK_TIME`` and allows ``srvr`` like the official image);
* Ryuk (testcontainers' reaper) is disabled: its image cannot be pulled either; the fixture removes
  its container itself, and this test removes any leftover of its session;
* ``TESTCONTAINERS_CONNECTION_MODE=docker_host``: this machine has a ``/.dockerenv``, which makes
  testcontainers think it runs inside a container and look up a gateway address in a field
  (``HostConfig`` of the container list) that podman 4.3's compat API does not return. The test runs
  on podman's host, where published ports are reached on localhost: ``docker_host`` is the right mode.

Then the fixture's own engine check (``_docker_unavailable``) must find the engine, and its
``_testcontainers()`` must return a ZooKeeper that kazoo can write to.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker  # type: ignore[import-untyped]
import pytest
from kazoo.client import KazooClient
from testcontainers.core.config import ConnectionMode, testcontainers_config
from testcontainers.core.labels import SESSION_ID

import tests.zookeeper_fixture as zk_fixture
from tests.deploy.test_image import Podman, podman_or_reason, podman_unavailable, run_image_tools, show
from tools.waiting import wait_for

pytestmark = [pytest.mark.deploy, pytest.mark.timeout(900)]  # a cold image build takes minutes


def _docker_ping(url: str) -> bool:
    try:
        client = docker.DockerClient(base_url=url, timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


@pytest.fixture(scope="module")
def podman_docker_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Podman, str]]:
    """`podman system service` on a private socket; yields podman and the socket's URL."""
    podman, detail = podman_or_reason()
    if podman is None:
        podman_unavailable(detail)
    assert podman is not None
    proc = run_image_tools("zookeeper-image", timeout=600)
    if proc.returncode != 0:
        pytest.fail(f"cannot build a local zookeeper:3.9 image:\n{proc.stderr[-3000:]}", pytrace=False)
    # A unix socket path must stay short (108 bytes): /tmp, not pytest's tmp_path.
    socket_path = Path(f"/tmp/election-podman-{uuid.uuid4().hex[:12]}.sock")
    url = f"unix://{socket_path}"
    log_path = tmp_path_factory.mktemp("podman-service") / "service.log"
    with log_path.open("w") as log:
        service = subprocess.Popen(
            ["podman", "system", "service", "--time=0", url], env=podman.env, stdout=log, stderr=log
        )
    try:
        with contextlib.suppress(AssertionError):  # judged just below, with the service's log
            wait_for(lambda: service.poll() is not None or _docker_ping(url), 30, "podman API", interval=0.1)
        if service.poll() is not None or not _docker_ping(url):
            podman_unavailable(
                f"`podman system service {url}` does not answer:\n{log_path.read_text()[-2000:]}"
            )
        yield podman, url
    finally:
        service.terminate()
        try:
            service.wait(timeout=15)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait(timeout=5)
        socket_path.unlink(missing_ok=True)


def test_fixture_testcontainers_path_gets_a_working_zookeeper_through_podman(
    podman_docker_api: tuple[Podman, str], monkeypatch: pytest.MonkeyPatch, pytestconfig: pytest.Config
) -> None:
    podman, url = podman_docker_api
    monkeypatch.setenv("DOCKER_HOST", url)
    monkeypatch.setattr(testcontainers_config, "ryuk_disabled", True)
    monkeypatch.setattr(testcontainers_config, "connection_mode_override", ConnectionMode.docker_host)

    assert zk_fixture._docker_unavailable() is None  # the fixture would now choose testcontainers
    started = time.monotonic()
    try:
        endpoint, stop = zk_fixture._testcontainers()
        try:
            elapsed = time.monotonic() - started
            assert endpoint.kind == "testcontainers"
            show(pytestconfig, f"testcontainers via podman: {endpoint.address} serving after {elapsed:.2f} s")
            client = KazooClient(hosts=endpoint.address, timeout=10.0)
            client.start(timeout=15)
            try:
                path = f"/election-test/testcontainers-podman-{uuid.uuid4().hex[:8]}"
                client.create(path, b"through podman", makepath=True)
                assert client.get(path)[0] == b"through podman"
            finally:
                client.stop()
                client.close()
            image = podman("ps", "--filter", f"label=org.testcontainers.session-id={SESSION_ID}",
                           "--format", "{{.Image}}").stdout.split()  # fmt: skip
            assert image == [f"docker.io/library/{zk_fixture.CONTAINER_IMAGE}"], image
        finally:
            stop()
    finally:
        leftovers = podman(
            "ps", "--all", "--quiet", "--filter", f"label=org.testcontainers.session-id={SESSION_ID}"
        ).stdout.split()
        if leftovers:
            podman("rm", "--force", "--time", "0", *leftovers, check=False)
    assert not leftovers, f"the fixture's stop() left containers behind: {leftovers}"
