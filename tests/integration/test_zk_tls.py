"""TLS to a real ZooKeeper (Debian's jars serve it with the Netty connection factory).

A test CA signs a server certificate for 127.0.0.1; the server listens in plain text (for its own
health check) and over TLS on a second port. The coordinator must verify the server against the CA,
and refuse a server whose certificate it cannot verify. Certificates come from the `openssl` command.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.adapters.kazoo_coordinator import KazooCoordinator
from app.config import TlsSettings
from app.ports.coordination import ConnectionState, CoordinationError
from tools.ports import free_port
from tools.waiting import wait_for
from tools.zookeeper import LocalZooKeeper

pytestmark = pytest.mark.integration

PASSWORD = "changeit"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certificates(directory: Path, name: str, san: str = "IP:127.0.0.1,DNS:localhost") -> None:
    """``<name>-ca.pem`` and a PKCS#12 keystore ``<name>-server.p12`` for ``san`` signed by it."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}-ca.key", "-out",
             f"{name}-ca.pem", "-days", "2", "-subj", f"/CN={name}-ca", cwd=directory)  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}-server.key", "-out",
             f"{name}-server.csr", "-subj", "/CN=127.0.0.1", cwd=directory)  # fmt: skip
    (directory / "san.cnf").write_text(f"subjectAltName={san}\n")
    _openssl("x509", "-req", "-in", f"{name}-server.csr", "-CA", f"{name}-ca.pem", "-CAkey", f"{name}-ca.key",
             "-CAcreateserial", "-out", f"{name}-server.pem", "-days", "2", "-extfile", "san.cnf",
             cwd=directory)  # fmt: skip
    _openssl("pkcs12", "-export", "-in", f"{name}-server.pem", "-inkey", f"{name}-server.key", "-out",
             f"{name}-server.p12", "-passout", f"pass:{PASSWORD}", cwd=directory)  # fmt: skip


class TlsZooKeeper(LocalZooKeeper):
    """A LocalZooKeeper that also serves TLS on ``secure_port`` with the given PKCS#12 keystore."""

    def __init__(self, workdir: Path, keystore: Path) -> None:
        super().__init__(workdir)
        self.keystore = keystore
        self.secure_port = free_port()

    @property
    def secure_address(self) -> str:
        return f"127.0.0.1:{self.secure_port}"

    def _config(self) -> dict[str, str]:
        return {
            **super()._config(),
            "secureClientPort": str(self.secure_port),
            "secureClientPortAddress": "127.0.0.1",
            "serverCnxnFactory": "org.apache.zookeeper.server.NettyServerCnxnFactory",
            "ssl.keyStore.location": str(self.keystore),
            "ssl.keyStore.password": PASSWORD,
            "ssl.keyStore.type": "PKCS12",
            "ssl.clientAuth": "none",
        }

    def _command(self) -> list[str]:
        command = super()._command()
        netty = sorted(str(p) for p in Path("/usr/share/java").glob("netty-*.jar") if "Final" not in p.name)
        where = command.index("-cp") + 1
        command[where] = ":".join([command[where], *netty])
        return command


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make test certificates: apt-get install openssl")
    directory = tmp_path_factory.mktemp("tls")
    make_certificates(directory, "good")
    make_certificates(directory, "other")
    make_certificates(directory, "misnamed", san="DNS:zookeeper.elsewhere.example")
    return directory


@pytest.fixture(scope="module")
def tls_server(certificates: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsZooKeeper]:
    if not list(Path("/usr/share/java").glob("netty-handler*.jar")):
        pytest.fail("Debian's netty jars are needed for ZooKeeper's TLS: apt-get install zookeeper")
    server = TlsZooKeeper(tmp_path_factory.mktemp("zk-tls"), certificates / "good-server.p12")
    server.start()
    yield server
    server.stop()


MakeClient = Callable[[str, Path | None], KazooCoordinator]


@pytest.fixture
def client() -> Iterator[MakeClient]:
    """Makes coordinators (not started) for ``/tls-election`` on an address, trusting the CA in a
    PEM file (``None``: plain text); all closed when the test is over."""
    made: list[KazooCoordinator] = []

    def make(address: str, ca: Path | None) -> KazooCoordinator:
        tls = None if ca is None else TlsSettings(ca=ca)
        made.append(KazooCoordinator(address, "/tls-election", session_timeout=4.0, tls=tls))
        return made[-1]

    yield make
    for coordinator in made:
        coordinator.close()


def test_the_coordinator_talks_tls_and_verifies_the_server(
    tls_server: TlsZooKeeper, certificates: Path, client: MakeClient
) -> None:
    coordinator = client(tls_server.secure_address, certificates / "good-ca.pem")
    coordinator.start()
    wait_for(lambda: coordinator.state() is ConnectionState.CONNECTED, 15, "TLS connection")
    coordinator.prepare("tls", {"identity": "tls"})
    coordinator.enter_queue()
    assert coordinator.queue_position() == 0
    node = coordinator.create_leader({"identity": "tls"})
    assert node is not None
    assert node.owner == coordinator.session_id()


def test_a_server_whose_certificate_does_not_verify_is_never_connected(
    tls_server: TlsZooKeeper, certificates: Path, client: MakeClient
) -> None:
    coordinator = client(tls_server.secure_address, certificates / "other-ca.pem")  # not the server's CA
    # kazoo keeps retrying the handshake; none succeeds within a bound many times the time a
    # good handshake takes (the next test shows the same server accepting a trusting client)
    with pytest.raises(CoordinationError, match="unreachable"):
        coordinator.connect(3.0)


def test_a_plaintext_client_gets_nothing_from_the_tls_port(
    tls_server: TlsZooKeeper, client: MakeClient
) -> None:
    with pytest.raises(CoordinationError, match="unreachable"):
        client(tls_server.secure_address, None).connect(3.0)


def test_a_certificate_for_another_host_is_refused_even_from_a_trusted_ca(
    certificates: Path, tmp_path: Path, client: MakeClient
) -> None:
    server = TlsZooKeeper(tmp_path / "zk", certificates / "misnamed-server.p12")
    server.start()
    try:
        # a trusted CA, but the certificate's name is not 127.0.0.1
        with pytest.raises(CoordinationError, match="unreachable"):
            client(server.secure_address, certificates / "misnamed-ca.pem").connect(3.0)
    finally:
        server.stop()
