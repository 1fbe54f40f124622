"""The container image: built with podman from the Dockerfile, linted, and run for real.

The image is built by ``scripts/image-tools.sh build`` (podman, a local stand-in base image where no
registry answers, wheels downloaded on the host), once per module. The running test starts it with
``--network host`` against the session's ZooKeeper, a host directory mounted as ``/data``, and
checks that it leads, writes leader files there, and that ``podman stop`` ends it with exit status 0
within the grace period.

If podman cannot run on this machine the podman tests fail and say why; with
``ELECTION_SKIP_IMAGE_TESTS=1`` they are skipped with that reason instead. The lint tests (hadolint,
checkov) need no podman.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kazoo.client import KazooClient

from app import __version__
from tests.zookeeper_fixture import ZooKeeperEndpoint
from tools.ports import free_port
from tools.waiting import wait_for

pytestmark = [pytest.mark.deploy, pytest.mark.timeout(900)]  # a cold image build takes minutes

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "image-tools.sh"
DOCKERFILE = ROOT / "Dockerfile"
APP_UID = 10001
GRACE_PERIOD_S = 30  # `podman stop -t`, the pod's default terminationGracePeriodSeconds
BUILD_TIMEOUT_S = 900  # a cold build: apt-get, debootstrap (~1 min), pip download, podman build


def show(config: pytest.Config, message: str) -> None:
    """Print a measurement even when pytest captures output."""
    capture = config.pluginmanager.getplugin("capturemanager")
    if capture is None:
        print(message)
        return
    with capture.global_and_fixture_disabled():
        print(f"\n[image] {message}", flush=True)


def podman_unavailable(reason: str) -> None:
    """A machine that cannot run podman: fail with the reason (skip if ELECTION_SKIP_IMAGE_TESTS=1)."""
    if os.environ.get("ELECTION_SKIP_IMAGE_TESTS") == "1":
        pytest.skip(f"podman unusable here (ELECTION_SKIP_IMAGE_TESTS=1): {reason}")
    pytest.fail(
        f"podman unusable here: {reason}\n(set ELECTION_SKIP_IMAGE_TESTS=1 to skip the image tests)",
        pytrace=False,
    )


def run_image_tools(
    *args: str, timeout: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args],
        cwd=ROOT,
        env={**os.environ, "PYTHON": sys.executable, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass(frozen=True)
class Podman:
    """podman with the project's containers.conf."""

    env: dict[str, str]

    def __call__(
        self, *args: str, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            ["podman", *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"podman {' '.join(args)} exited {proc.returncode}:\n"
                f"{proc.stdout[-2000:]}{proc.stderr[-3000:]}"
            )
        return proc


def podman_or_reason() -> tuple[Podman | None, str]:
    """Install podman if needed (scripts/image-tools.sh install), then ask `podman info`."""
    try:
        proc = run_image_tools("install", timeout=600)
    except subprocess.TimeoutExpired:
        return None, "scripts/image-tools.sh install took longer than 600 s"
    if proc.returncode != 0:
        return None, f"scripts/image-tools.sh install failed:\n{proc.stderr[-2000:]}"
    env = dict(os.environ)
    for line in run_image_tools("env", timeout=30).stdout.splitlines():
        key, _, value = line.partition("=")
        env[key] = value
    podman = Podman(env)
    try:
        info = podman("info", "--format", "{{.Host.OCIRuntime.Name}} {{.Store.GraphDriverName}}", check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"`podman info` did not run: {exc!r}"
    if info.returncode != 0:
        return None, f"`podman info` exited {info.returncode}: {info.stderr.strip()[-2000:]}"
    return podman, info.stdout.strip()


@pytest.fixture(scope="module")
def podman() -> Podman:
    found, detail = podman_or_reason()
    if found is None:
        podman_unavailable(detail)
    assert found is not None
    return found


@dataclass(frozen=True)
class BuiltImage:
    ref: str
    build_seconds: float
    size_bytes: int


@pytest.fixture(scope="module")
def image(podman: Podman, pytestconfig: pytest.Config) -> BuiltImage:
    ref = podman.env.get("IMAGE", "localhost/election:test")
    started = time.monotonic()
    try:
        proc = run_image_tools("build", timeout=BUILD_TIMEOUT_S, env={"IMAGE": ref})
    except subprocess.TimeoutExpired:
        pytest.fail(f"scripts/image-tools.sh build took longer than {BUILD_TIMEOUT_S} s", pytrace=False)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        pytest.fail(
            f"scripts/image-tools.sh build exited {proc.returncode}:\n{proc.stderr[-4000:]}", pytrace=False
        )
    size = int(podman("image", "inspect", ref, "--format", "{{.Size}}").stdout.strip())
    show(
        pytestconfig,
        f"built {ref} in {elapsed:.1f} s (scripts/image-tools.sh build); size {size / 1e6:.0f} MB",
    )
    return BuiltImage(ref, elapsed, size)


def _inspect(podman: Podman, ref: str) -> dict[str, Any]:
    data = json.loads(podman("image", "inspect", ref).stdout)
    assert len(data) == 1
    result: dict[str, Any] = data[0]
    return result


# --------------------------------------------------------------------------
# Lints: no podman needed
# --------------------------------------------------------------------------


def _lint_tool(name: str) -> Path:
    """`name` from: $HADOLINT/$CHECKOV, the test venv, .tools/bin (scripts/deploy-tools.sh), PATH;
    else installed by `scripts/image-tools.sh lint-tools` (a venv of its own: checkov pins packaging<24,
    which pytest 9 cannot share)."""
    candidates = [os.environ.get(name.upper(), ""), str(Path(sys.executable).parent / name)]
    candidates += [str(ROOT / ".tools" / "bin" / name), shutil.which(name) or ""]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate)
    proc = run_image_tools("lint-tools", timeout=600)
    assert proc.returncode == 0, f"scripts/image-tools.sh lint-tools failed:\n{proc.stderr[-3000:]}"
    return Path(proc.stdout.strip().splitlines()[-1]) / name


def _hadolint(dockerfile: Path) -> tuple[int, str]:
    """hadolint's exit status and everything it printed about ``dockerfile``."""
    proc = subprocess.run(
        [str(_lint_tool("hadolint")), "--no-color", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return proc.returncode, proc.stdout + proc.stderr


def test_hadolint_reports_nothing() -> None:
    code, output = _hadolint(DOCKERFILE)
    assert (code, output) == (0, ""), output


def test_checkov_dockerfile_has_no_failed_check_and_every_skip_is_justified() -> None:
    checkov = _lint_tool("checkov")
    proc = subprocess.run(
        [str(checkov), "--framework", "dockerfile", "--skip-download", "--file", str(DOCKERFILE),
         "--output", "json"],
        capture_output=True, text=True, timeout=300, check=False, cwd=ROOT,
    )  # fmt: skip
    report = json.loads(proc.stdout)
    summary = report["summary"]
    failed = [f"{c['check_id']} {c['check_name']}" for c in report["results"]["failed_checks"]]
    assert summary["failed"] == 0 and not failed, failed
    assert summary["parsing_errors"] == 0
    assert summary["passed"] >= 30, summary  # the dockerfile checks really ran
    for skipped in report["results"]["skipped_checks"]:
        reason = (skipped["check_result"].get("suppress_comment") or "").strip()
        assert len(reason) > 20, f"{skipped['check_id']} skipped without a justification"
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_dockerfile_shape() -> None:
    """The few facts the chart and the issue rely on, read from the Dockerfile itself."""
    lines = [
        ln.strip() for ln in DOCKERFILE.read_text().splitlines() if ln.strip() and not ln.startswith("#")
    ]
    froms = [ln.split()[1] for ln in lines if ln.upper().startswith("FROM ") and " scratch " not in f"{ln} "]
    assert froms == ["docker.io/library/python:3.11-slim-bookworm"] * 2, froms
    assert 'ENTRYPOINT ["election", "run"]' in lines
    assert "STOPSIGNAL SIGTERM" in lines
    assert f"USER {APP_UID}:{APP_UID}" in lines
    assert "/usr/local/bin/python" not in DOCKERFILE.read_text()
    assert "/usr/bin/python" not in DOCKERFILE.read_text()


# --------------------------------------------------------------------------
# The built image
# --------------------------------------------------------------------------


def test_build_context_holds_only_what_the_build_needs(
    podman: Podman, image: BuiltImage, tmp_path: Path
) -> None:
    """Build a throwaway image that copies the whole context with our .dockerignore, and list it."""
    containerfile = tmp_path / "Containerfile"
    base_ref = podman.env.get("BASE_IMAGE", "docker.io/library/python:3.11-slim-bookworm")
    containerfile.write_text(f"FROM {base_ref}\nCOPY . /context\n")
    tag = f"localhost/election-context-probe:{uuid.uuid4().hex[:8]}"
    podman("build", "--pull=never", "--layers=false", "-q", "-f", str(containerfile), "-t", tag, str(ROOT),
           timeout=300)  # fmt: skip
    try:
        listing = podman("run", "--rm", "--network=none", tag, "find", "/context", "-mindepth", "1").stdout
    finally:
        podman("rmi", "-f", tag, check=False)
    paths = {p.removeprefix("/context/") for p in listing.split()}
    top = {p.split("/", 1)[0] for p in paths}
    assert top == {"pyproject.toml", "README.md", "app"}, sorted(top)
    assert not [p for p in paths if "__pycache__" in p or p.endswith(".pyc")]
    assert "app/cli.py" in paths


def test_image_config(podman: Podman, image: BuiltImage) -> None:
    config = _inspect(podman, image.ref)["Config"]
    assert config["User"] == f"{APP_UID}:{APP_UID}"
    assert config["Entrypoint"] == ["election", "run"]
    assert config.get("StopSignal") == "SIGTERM"
    assert "8080/tcp" in config["ExposedPorts"]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["ELECTION_HTTP_ADDRESS"] == "0.0.0.0:8080"
    assert env["ELECTION_FILE_DIR"] == "/data"
    assert env["PATH"].startswith("/opt/venv/bin:")
    labels = config["Labels"]
    for key in ("title", "description", "source", "licenses", "version"):
        assert f"org.opencontainers.image.{key}" in labels, key
    assert labels["org.opencontainers.image.title"] == "election"
    assert labels["org.opencontainers.image.version"] == __version__
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"


def test_image_runs_as_uid_10001_and_owns_data(podman: Podman, image: BuiltImage) -> None:
    ident = podman("run", "--rm", "--network=none", "--entrypoint", "id", image.ref).stdout.strip()
    assert ident.startswith(f"uid={APP_UID}(election) gid={APP_UID}(election)"), ident
    owner = podman(
        "run", "--rm", "--network=none", "--entrypoint", "stat", image.ref, "-c", "%u:%g %a", "/data"
    )
    assert owner.stdout.strip() == f"{APP_UID}:{APP_UID} 755"
    version = podman("run", "--rm", "--network=none", "--entrypoint", "election", image.ref, "--version")
    assert __version__ in version.stdout


def test_final_image_has_no_build_tools_pip_or_pip_cache(podman: Podman, image: BuiltImage) -> None:
    probe = r"""
for tool in gcc cc c++ make ld; do command -v "$tool" && echo "TOOL $tool"; done
for dir in /root/.cache /home/election/.cache /tmp/dist /src /wheels; do
    [ -e "$dir" ] && echo "LEFTOVER $dir"
done
find / -xdev \( -path /proc -o -path /sys \) -prune -o -type d -path '*/.cache/pip' -print | sed 's/^/CACHE /'
ls /opt/venv/bin | grep -i '^pip' | sed 's/^/VENVPIP /'
/opt/venv/bin/python -c 'import pip' 2>/dev/null && echo 'VENVPIP importable'
true
"""
    out = podman("run", "--rm", "--network=none", "--user", "0", "--entrypoint", "sh", image.ref, "-c", probe)
    assert out.stdout.strip() == "", out.stdout


# --------------------------------------------------------------------------
# It really works
# --------------------------------------------------------------------------


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def _at_least(count: int, items: list[Path]) -> list[Path]:
    return items if len(items) >= count else []


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A host directory for /data, writable for the image's uid."""
    data = tmp_path / "data"
    data.mkdir()
    if os.geteuid() == 0:
        os.chown(data, APP_UID, APP_UID)
    else:
        data.chmod(0o777)
    return data


@dataclass(frozen=True)
class Container:
    """The one container of a test: a replica of the test's election on the session's ZooKeeper,
    with ``data_dir`` as /data; removed when the test is over."""

    podman: Podman
    name: str
    data_dir: Path
    zk: ZooKeeperEndpoint
    election_path: str

    def run(self, ref: str, port: int, **env: str) -> None:
        """Start image ``ref`` in the background as the chart runs it (read-only root file system,
        no capabilities, no privilege gain) on the host's network, serving HTTP on ``port``, with
        each of ``env`` as an ``ELECTION_`` variable (``IDENTITY="x"``: ``ELECTION_IDENTITY=x``)."""
        env = {
            "ZK_SERVERS": self.zk.address,
            "HTTP_ADDRESS": f"127.0.0.1:{port}",
            "ELECTION_PATH": self.election_path,
            **env,
        }
        self.podman(
            "run", "--detach", "--name", self.name, "--network", "host",
            "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "--volume", f"{self.data_dir}:/data",
            *(arg for key, value in env.items() for arg in ("--env", f"ELECTION_{key}={value}")),
            ref,
        )  # fmt: skip

    def logs(self) -> str:
        """The end of the container's output, headed for a failure message."""
        proc = self.podman("logs", self.name, check=False)
        return f"--- container logs ---\n{(proc.stdout + proc.stderr)[-6000:]}"

    def stop(self) -> tuple[dict[str, Any], float]:
        """``podman stop`` with the pod's grace period: the container's state after it, and the
        seconds that ``podman stop`` took."""
        started = time.monotonic()
        self.podman("stop", "--time", str(GRACE_PERIOD_S), self.name, timeout=GRACE_PERIOD_S + 30)
        took = time.monotonic() - started
        state = self.podman("inspect", self.name, "--format", "{{json .State}}").stdout
        return json.loads(state), took


@pytest.fixture
def container(
    podman: Podman, data_dir: Path, zk_server: ZooKeeperEndpoint, election_path: str
) -> Iterator[Container]:
    made = Container(
        podman, f"election-image-test-{uuid.uuid4().hex[:8]}", data_dir, zk_server, election_path
    )
    yield made
    podman("rm", "--force", "--time", "0", made.name, check=False)


def test_image_leads_writes_into_mounted_dir_and_stops_with_0(
    podman: Podman,
    image: BuiltImage,
    zk_server: ZooKeeperEndpoint,
    election_path: str,
    data_dir: Path,
    container: Container,
    pytestconfig: pytest.Config,
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    container.run(image.ref, port, LEADER_TIMEOUT="500ms", IDENTITY="image-test", LOG_LEVEL="debug")
    logs = container.logs

    def status() -> dict[str, Any] | None:
        code, body = _get(f"{base}/status")
        return json.loads(body) if code == 200 else None

    try:
        wait_for(
            lambda: (s := status()) is not None and s["state"] == "Leader", 45, "state Leader", interval=0.1
        )
        files = wait_for(
            lambda: _at_least(3, sorted(data_dir.glob("leader-*.json"))), 10, "3 leader files", interval=0.1
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{logs()}") from None
    doc = status()
    assert doc is not None
    assert doc["identity"] == "image-test" and doc["election_path"] == election_path
    assert doc["leader"]["self"] is True
    written = json.loads(files[0].read_text())
    assert written["identity"] == "image-test"
    assert files[0].stat().st_uid == APP_UID
    assert _get(f"{base}/healthz")[0] == 200
    assert _get(f"{base}/readyz")[0] == 200
    assert "election_is_leader 1.0" in _get(f"{base}/metrics")[1]

    state, stop_seconds = container.stop()
    show(
        pytestconfig,
        f"podman stop -t {GRACE_PERIOD_S}: exited {state['ExitCode']} after {stop_seconds:.2f} s",
    )
    assert state["ExitCode"] == 0, logs()
    assert stop_seconds < GRACE_PERIOD_S, logs()
    output = podman("logs", container.name)
    transitions = [
        json.loads(line)
        for line in (output.stdout + output.stderr).splitlines()
        if line.startswith("{") and '"transition"' in line
    ]
    assert any(t.get("from") == "Leader" and t.get("to") == "Stopping" for t in transitions), logs()

    # The graceful stop released the leader node at once (the session was closed, not left to expire).
    client = KazooClient(hosts=zk_server.address, timeout=10.0)
    client.start(timeout=15)
    try:
        assert client.exists(f"{election_path}/leader") is None
    finally:
        client.stop()
        client.close()


# --------------------------------------------------------------------------
# examples/exec/Dockerfile: a user's image with election as its entrypoint wrapper
# --------------------------------------------------------------------------

WRAPPER_DIR = ROOT / "examples" / "exec"


def test_hadolint_reports_nothing_on_the_wrapper_example() -> None:
    code, output = _hadolint(WRAPPER_DIR / "Dockerfile")
    assert (code, output) == (0, ""), output


def test_the_wrapper_example_runs_its_command_as_leader_and_stops_it_with_0(
    podman: Podman, image: BuiltImage, data_dir: Path, container: Container
) -> None:
    """The documented pattern, built and run: the user's image copies election's virtualenv, its
    ENTRYPOINT is `election run --` and its CMD the command (examples/exec/fenced-writer.sh)."""
    tag = f"localhost/election-wrapper-example:{uuid.uuid4().hex[:8]}"
    podman("build", "--pull=never", "-q", "--build-arg", f"ELECTION_IMAGE={image.ref}", "-t", tag,
           str(WRAPPER_DIR), timeout=300)  # fmt: skip
    port = free_port()
    try:
        container.run(tag, port, EXEC_STOP_TIMEOUT="1s", IDENTITY="wrapper-test")
        logs = container.logs

        def work() -> dict[str, Any] | None:
            code, body = _get(f"http://127.0.0.1:{port}/status")
            return json.loads(body)["work"] if code == 200 else None

        journal = data_dir / "journal.txt"
        try:
            running = wait_for(
                lambda: (w := work()) is not None and w["running"] and w, 45, "the command", interval=0.1
            )
            wait_for(
                lambda: journal.exists() and len(journal.read_text().splitlines()) >= 2,
                15,
                "2 lines",
                interval=0.1,
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{logs()}") from None
        assert running["kind"] == "exec" and running["command"] == ["/app/fenced-writer.sh"]
        epoch = running["epoch"]
        assert all(line.startswith(f"epoch {epoch} write ") for line in journal.read_text().splitlines())
        assert not list(data_dir.glob("leader-*.json")), "with a command the leader writes no files"

        state, _took = container.stop()
        assert state["ExitCode"] == 0, logs()
        assert f"fenced-writer: epoch {epoch} stopped" in logs()
    finally:
        podman("rm", "--force", "--time", "0", container.name, check=False)  # before its image goes
        podman("rmi", "-f", tag, check=False)
