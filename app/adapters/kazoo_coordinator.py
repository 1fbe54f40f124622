"""The coordination port on kazoo: the only module that imports kazoo.

With ``--zk-tls`` (or any ``--zk-tls-*`` file) the connection uses TLS and verifies the servers'
certificates. With digest credentials (``--zk-auth user:password``) every session authenticates with them and
every node is created with an ACL that gives their holders all rights and everyone else read.

Layout under ``<election-path>``::

    leader            ephemeral; data {"identity", "acquired_at"}; czxid = the term's epoch
    members/m-<id>-N  ephemeral sequential, one per live session; data {"identity", ...}
    candidates/c-<session>-N  ephemeral sequential, one per session in the queue of candidates
    switchover        persistent; {} or one pending SwitchoverRequest; every replica watches it
    history           persistent; {"terms": [TermRecord...]}, the last HISTORY_TERMS

Translation rules:

* kazoo's connection states map to :class:`ConnectionState`; before :meth:`start` and after
  :meth:`close` the state is CLOSED; started but never connected reads as LOST (no session).
* Every server call is asynchronous with ``.get(timeout=operation_timeout)``: a synchronous kazoo
  call made while SUSPENDED blocks until reconnection, which a leader must never do.
* kazoo's exceptions become :class:`CoordinationError`; nothing else escapes.
* ``NoAuthError`` (an ACL naming credentials we lack) becomes :class:`PermissionDeniedError`, so that
  a command can tell a missing ``--zk-auth`` from an outage.
* Listener and watch callbacks run on kazoo's thread: they only record the state and call the
  subscribers, which must not block either.
* The session timeout the server granted: ZooKeeper clamps the requested timeout to its
  ``[minSessionTimeout, maxSessionTimeout]``; kazoo reads the granted value from the Connect reply
  in ``ConnectionHandler._connect`` and keeps it in a local variable. We record it from that reply
  (:func:`_record_connect_replies` wraps the handler's ``_invoke``, through which the Connect
  request goes) before kazoo reports CONNECTED, so it is known the moment the state is; a kazoo
  that no longer routes the Connect request there fails loudly at construction, and
  ``tests/integration/test_kazoo_coordinator.py`` checks the value on a real server.
* Fresh reads (``leader(fresh=True)``) send ``sync`` and then the read, pipelined: the server
  answers our requests in order, and holds the read until the sync has gone through the quorum
  leader, so an answer proves that the server was in touch with the quorum after we asked.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import kazoo
from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import BadVersionError, KazooException, NoAuthError, NodeExistsError, NoNodeError
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.protocol.serialization import Connect
from kazoo.protocol.states import EventType, WatchedEvent
from kazoo.retry import KazooRetry
from kazoo.security import OPEN_ACL_UNSAFE, make_acl, make_digest_acl

from app.config import TlsSettings
from app.ports.coordination import (
    ConnectionState,
    CoordinationError,
    LeaderNode,
    Member,
    PermissionDeniedError,
    SwitchoverBusyError,
    SwitchoverRequest,
    TermRecord,
)

log = logging.getLogger("election.zookeeper")

_KAZOO_STATES = {
    KazooState.CONNECTED: ConnectionState.CONNECTED,
    KazooState.SUSPENDED: ConnectionState.SUSPENDED,
    KazooState.LOST: ConnectionState.LOST,
}
_ERRORS = (KazooException, KazooTimeoutError)
# How many terms the history node keeps (a few KB: far below ZooKeeper's 1 MB node limit).
HISTORY_TERMS = 20
# Conditional writes of the history retried when another writer came first.
_HISTORY_ATTEMPTS = 3
# Reads of the leader node per look when it keeps appearing and vanishing between getData and exists;
# past that, the look reports the node's stat with unknown data.
_LOOK_ATTEMPTS = 3
T = TypeVar("T")


def _sequence(name: str) -> int:
    """The counter ZooKeeper appends to a sequential node's name (10 digits)."""
    return int(name[-10:]) if name[-10:].isdigit() else -1


def adopted_candidate(children: list[str], prefix: str) -> str | None:
    """Our own node among the queue's ``children`` (names starting with our session's ``prefix``:
    a create whose reply was lost), the oldest if several; None if we have not joined."""
    ours = [child for child in children if child.startswith(prefix)]
    return min(ours, key=_sequence) if ours else None


def candidates_ahead(children: list[str], mine: str) -> tuple[int, str | None]:
    """How many candidates stand ahead of ``mine`` in the queue, and the one just ahead (None at
    the head). Queue order is the sequence ZooKeeper appended to each name, not the name: names
    begin with the session id, so a newer session can sort first."""
    ahead = [child for child in children if _sequence(child) < _sequence(mine)]
    return len(ahead), (max(ahead, key=_sequence) if ahead else None)


def _decode(data: bytes | None) -> dict[str, Any]:
    try:
        value = json.loads(data or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _parse_request(content: dict[str, Any]) -> SwitchoverRequest | None:
    """The request a switchover node holds, or None (idle, or not one we can read)."""
    try:
        return SwitchoverRequest(
            id=str(content["id"]),
            from_epoch=int(content["from_epoch"]),
            from_identity=str(content.get("from_identity", "")),
            to=None if content.get("to") is None else str(content["to"]),
            requested_at=str(content.get("requested_at", "")),
            expires_in=float(content.get("expires_in", 0.0)),
        )
    except (KeyError, TypeError, ValueError):
        return None


def _parse_terms(content: dict[str, Any]) -> list[TermRecord]:
    terms: list[TermRecord] = []
    raw = content.get("terms")
    for item in raw if isinstance(raw, list) else []:
        try:
            terms.append(
                TermRecord(
                    epoch=int(item["epoch"]),
                    identity=str(item.get("identity", "")),
                    began=str(item.get("began", "")),
                    ended=None if item.get("ended") is None else str(item["ended"]),
                    reason=None if item.get("reason") is None else str(item["reason"]),
                )
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            continue  # an entry we cannot read (written by hand?) is skipped, not fatal
    return terms


def _encode_terms(terms: list[TermRecord]) -> bytes:
    return json.dumps({"terms": [dataclasses.asdict(term) for term in terms]}).encode()


def _record_connect_replies(client: KazooClient, record: Callable[[float], None]) -> None:
    """Call ``record`` with the session timeout (seconds) of every Connect reply ``client`` gets.

    kazoo sends the Connect request through ``ConnectionHandler._invoke`` and reports CONNECTED
    only after it returns, on the same thread: so ``record`` runs before the state listeners hear
    of the connection. Raises CoordinationError if this kazoo has no such method to wrap.
    """
    connection = getattr(client, "_connection", None)
    invoke = getattr(connection, "_invoke", None)
    if connection is None or not callable(invoke):
        raise CoordinationError(
            f"kazoo {getattr(kazoo, '__version__', '?')}: cannot learn the session timeout the server "
            "grants (kazoo.protocol.connection.ConnectionHandler._invoke is gone)"
        )

    def recording_invoke(timeout: float, request: Any, xid: int | None = None) -> Any:
        result = invoke(timeout, request, xid)
        if isinstance(request, Connect) and isinstance(result, tuple):
            reply = result[0]
            granted = getattr(reply, "time_out", None)
            if isinstance(granted, int) and granted > 0:
                record(granted / 1000.0)
        return result

    connection._invoke = recording_invoke


def _auth_options(auth: str | None) -> dict[str, Any]:
    """Digest credentials ``user:password``: authenticate every session with them, and create every
    node with an ACL that lets only their holders change or delete it, while anyone may read."""
    if auth is None:
        return {}
    user, _sep, password = auth.partition(":")
    return {
        "auth_data": [("digest", auth)],
        "default_acl": [
            make_digest_acl(user, password, all=True),
            make_acl("world", "anyone", read=True),
        ],
    }


def _tls_options(tls: TlsSettings | None) -> dict[str, Any]:
    """TLS with the servers' certificates verified (against ``ca``, else the system's CAs), including
    that they name the host we connect to (kazoo leaves that off by default)."""
    if tls is None:
        return {}
    return {
        "use_ssl": True,
        "verify_certs": True,
        "check_hostname": True,
        "ca": str(tls.ca) if tls.ca else None,
        "certfile": str(tls.cert) if tls.cert else None,
        "keyfile": str(tls.key) if tls.key else None,
    }


class KazooCoordinator:
    """Implements :class:`app.ports.coordination.Coordinator` with one ``KazooClient``."""

    def __init__(
        self,
        hosts: str,
        election_path: str,
        *,
        session_timeout: float,
        operation_timeout: float | None = None,
        reconnect_backoff_max: float = 5.0,
        auth: str | None = None,
        tls: TlsSettings | None = None,
    ) -> None:
        self.requested_session_timeout = session_timeout
        self._operation_timeout = operation_timeout
        # Granted by the server on the current connection (None while not connected), and the last
        # value a Connect reply carried (recorded on kazoo's thread just before CONNECTED).
        self._granted: float | None = None
        self._reply_granted: float | None = None
        self._warned_granted: float | None = None
        self.leader_path = f"{election_path}/leader"
        self.members_path = f"{election_path}/members"
        self.candidates_path = f"{election_path}/candidates"
        self.switchover_path = f"{election_path}/switchover"
        self.history_path = f"{election_path}/history"
        # The pending request as last read (None: none) and that read's node version; the change
        # count of the watch (a re-read answers for the count it was sent at) and the count it saw.
        self._request: SwitchoverRequest | None = None
        self._request_version = -1
        self._request_changes = 0
        self._request_read = 0
        # Our own last write of the history: the terms and the node version it made.
        self._history: tuple[list[TermRecord], int] | None = None
        self._candidate: tuple[int, str] | None = None  # (session, node name) in the queue
        self._hosts = hosts
        # A chroot suffix (``a:2181,b:2181/apps/election``) goes to kazoo as it is; the servers alone
        # are kept to create a missing chroot, which no session inside it can do.
        servers, slash, chroot = hosts.partition("/")
        self._chroot = "/" + chroot.strip("/") if slash and chroot.strip("/") else None
        self._servers = servers
        self._options: dict[str, Any] = {
            "timeout": session_timeout,
            "logger": logging.getLogger("election.kazoo"),
            **_auth_options(auth),
            **_tls_options(tls),
        }
        self._client = KazooClient(
            hosts=hosts,
            connection_retry=KazooRetry(
                max_tries=-1, delay=0.1, backoff=2, max_jitter=0.4, max_delay=reconnect_backoff_max
            ),
            **self._options,
        )
        _record_connect_replies(self._client, self._on_connect_reply)
        self._client.add_listener(self._on_connection_change)
        self._lock = threading.Lock()
        self._state = ConnectionState.CLOSED
        self._started = False
        self._member_session: int | None = None
        self._vacancy = False  # the leader node's deletion was reported; read once by take_over_signal
        self._moved = False  # the deletion of the candidate ahead was reported; read once by queue_moved
        self._predecessor: str | None = None  # the candidate node we watch, if any
        self._subscribers: list[Callable[[], None]] = []

    # -- connection -------------------------------------------------------------------------
    def subscribe(self, callback: Callable[[], None]) -> None:
        self._subscribers.append(callback)

    def start(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
            self._state = ConnectionState.LOST
        try:
            self._client.start_async()
        except _ERRORS as exc:
            with self._lock:
                self._started = False
                self._state = ConnectionState.CLOSED
            raise CoordinationError(f"cannot start ZooKeeper client: {exc}") from exc
        self._notify()

    def connect(self, timeout: float) -> None:
        """Start and wait until connected (for one-shot commands such as ``election status``)."""
        connected = threading.Event()

        def on_change() -> None:
            if self.state() is ConnectionState.CONNECTED:
                connected.set()

        self.subscribe(on_change)
        self.start()
        on_change()
        if not connected.wait(timeout):
            self.close()
            raise CoordinationError(f"ZooKeeper {self._hosts} unreachable for {timeout:g}s")

    def state(self) -> ConnectionState:
        return self._state

    def granted_session_timeout(self) -> float | None:
        return self._granted if self._state is ConnectionState.CONNECTED else None

    @property
    def operation_timeout(self) -> float:
        """How long one server call may take: a third of the granted session timeout (the
        requested one before the first connection), so that a read comes back well within the
        leader's lease (2/3 of it); never less than 0.1 s."""
        if self._operation_timeout is not None:
            return self._operation_timeout
        return max((self._granted or self.requested_session_timeout) / 3.0, 0.1)

    def session_id(self) -> int | None:
        if self._state is not ConnectionState.CONNECTED:
            return None
        client_id = self._client.client_id
        return int(client_id[0]) if client_id else None

    def close(self) -> None:
        with self._lock:
            if not self._started:
                return
            self._started = False
        try:
            self._client.stop()
            self._client.close()
        except _ERRORS as exc:  # pragma: no cover - closing is best effort
            log.warning("error while closing the ZooKeeper client: %s", exc)
        self._state = ConnectionState.CLOSED
        self._notify()

    def _on_connect_reply(self, granted: float) -> None:
        # Runs on kazoo's thread, inside its connect, before it reports CONNECTED.
        self._reply_granted = granted

    def _on_connection_change(self, kazoo_state: str) -> None:
        # Runs on kazoo's thread: record and notify only.
        with self._lock:
            if not self._started:
                return
            state = _KAZOO_STATES.get(kazoo_state, ConnectionState.LOST)
            if state is ConnectionState.CONNECTED:
                # Taken (and cleared) once per connection: a reply of an earlier connection must
                # never stand in for this one's.
                self._granted, self._reply_granted = self._reply_granted, None
            self._state = state
        granted = self._granted if state is ConnectionState.CONNECTED else None
        log.info(
            "ZooKeeper connection %s",
            state.value,
            extra={"event": "zk_connection", "zk_state": state.value, "session_timeout_seconds": granted},
        )
        if state is ConnectionState.CONNECTED:
            self._check_granted(granted)
            if not self.switchover_settled():
                self._reread_request()  # a re-read lost with the connection: no create until it is done
        self._notify()

    def _check_granted(self, granted: float | None) -> None:
        if granted is None:
            log.error(
                "connected, but the session timeout the server granted is unknown: not leading",
                extra={"event": "zk_session_timeout_unknown"},
            )
        elif granted not in (self.requested_session_timeout, self._warned_granted):
            self._warned_granted = granted  # once per value, not on every reconnection
            log.warning(
                "ZooKeeper granted a session timeout of %gs instead of the %gs asked for (the server "
                "clamps it to its min/maxSessionTimeout, by default 2-20 x tickTime); leases use %gs",
                granted,
                self.requested_session_timeout,
                granted,
                extra={
                    "event": "zk_session_timeout_granted",
                    "granted_seconds": granted,
                    "requested_seconds": self.requested_session_timeout,
                },
            )

    def _on_watch(self, event: WatchedEvent) -> None:
        # Runs on kazoo's thread. Our watches are on the leader node (head and leader) and on the
        # candidate just ahead: the deletion of the first may have freed the node for us; of the
        # second, made us the head. (A watch left on an earlier predecessor wakes us, but signals
        # nothing.)
        if event.type == EventType.DELETED:
            with self._lock:
                if event.path == self.leader_path:
                    self._vacancy = True
                elif event.path == self._predecessor:
                    self._moved = True
        self._notify()

    def _notify(self) -> None:
        for callback in list(self._subscribers):
            callback()

    # -- nodes ------------------------------------------------------------------------------
    def prepare(self, identity: str, info: dict[str, Any]) -> None:
        session = self.session_id()
        if session is None:
            raise CoordinationError("not connected")
        self._call(self._ensure_tree)
        self._call(self._read_request)  # and watch it, for this session
        if self._member_session == session:
            return
        self._call(
            lambda: self._client.create_async(
                f"{self.members_path}/m-{identity}-",
                json.dumps(info).encode(),
                ephemeral=True,
                sequence=True,
            ).get(timeout=self.operation_timeout)
        )
        self._member_session = session

    def enter_queue(self) -> None:
        session = self.session_id()
        if session is None:
            raise CoordinationError("not connected")
        if self._candidate is not None and self._candidate[0] == session:
            return

        prefix = f"c-{session:016x}-"

        def join() -> str:
            # A create whose reply was lost may have joined us already: adopt that node rather than
            # queue behind our own orphan (which would then never let us hear the queue move).
            children = self._client.get_children_async(self.candidates_path).get(
                timeout=self.operation_timeout
            )
            ours = adopted_candidate(children, prefix)
            if ours is not None:
                return ours
            path: str = self._client.create_async(
                f"{self.candidates_path}/{prefix}", b"", ephemeral=True, sequence=True
            ).get(timeout=self.operation_timeout)
            return path.rsplit("/", 1)[1]

        self._candidate = (session, self._call(join))

    def queue_position(self) -> int:
        candidate = self._candidate
        if candidate is None or candidate[0] != self.session_id():
            raise CoordinationError("not in the queue of candidates")
        mine = candidate[1]

        def look() -> int:
            # Candidates ahead of us only ever leave (new ones queue behind), so this loop ends:
            # each turn either sets the watch, finds us first, or finds one fewer ahead.
            while True:
                children = self._client.get_children_async(self.candidates_path).get(
                    timeout=self.operation_timeout
                )
                if mine not in children:
                    self._candidate = None  # deleted by hand: Init and Attempter will re-join
                    raise CoordinationError(f"our candidate node {mine} is gone")
                ahead, just_ahead = candidates_ahead(children, mine)
                if just_ahead is None:
                    self._predecessor = None
                    return 0
                predecessor = f"{self.candidates_path}/{just_ahead}"
                self._predecessor = predecessor
                if self._client.exists_async(predecessor, watch=self._on_watch).get(
                    timeout=self.operation_timeout
                ):
                    return ahead
                # It left between the two reads: look again.

        return self._call(look)

    def take_over_signal(self) -> bool:
        with self._lock:
            signalled, self._vacancy = self._vacancy, False
        return signalled

    def queue_moved(self) -> bool:
        with self._lock:
            moved, self._moved = self._moved, False
        return moved

    def leave_queue(self) -> None:
        candidate, self._candidate = self._candidate, None
        self._predecessor = None  # its deletion (the watch stays set) no longer frees anything for us
        if candidate is None or candidate[0] != self.session_id():
            return
        path = f"{self.candidates_path}/{candidate[1]}"

        def delete() -> None:
            with contextlib.suppress(NoNodeError):
                self._client.delete_async(path).get(timeout=self.operation_timeout)

        with contextlib.suppress(CoordinationError):  # best effort: the session's end removes it too
            self._call(delete)

    def leader(self, *, watch: bool, fresh: bool = False) -> LeaderNode | None:
        callback = self._on_watch if watch else None

        def look() -> LeaderNode | None:
            data = b""
            # Sent before the read and not waited for on its own: the read's answer comes after the
            # sync's, and only once the sync went through the quorum leader. Its reply is checked
            # too (an error, or none within the timeout, fails the look).
            synced = self._client.sync_async(self.leader_path) if fresh else None
            for _ in range(_LOOK_ATTEMPTS):
                try:
                    data, stat = self._client.get_async(self.leader_path, watch=callback).get(
                        timeout=self.operation_timeout
                    )
                    break
                except NoNodeError:
                    # A free node: no watch on its creation (whoever looks at a free node creates
                    # it at once; our own create would only wake us). exists catches a racing create.
                    stat = self._client.exists_async(self.leader_path).get(timeout=self.operation_timeout)
                    if stat is None:
                        return None
                    # Created between the two reads (every hand-over races so): read its data again
                    # (with the watch), or the leader would show as "" until the next look.
            if synced is not None:
                synced.get(timeout=self.operation_timeout)
            content = _decode(data)
            return LeaderNode(
                owner=int(stat.ephemeralOwner),
                epoch=int(stat.czxid),
                identity=str(content.get("identity", "")),
                acquired_at=str(content.get("acquired_at", "")),
            )

        return self._call(look)

    def create_leader(self, data: dict[str, Any]) -> LeaderNode | None:
        def create() -> LeaderNode | None:
            try:
                _path, stat = self._client.create_async(
                    self.leader_path,
                    json.dumps(data).encode(),
                    ephemeral=True,
                    makepath=True,
                    include_data=True,
                ).get(timeout=self.operation_timeout)
            except NodeExistsError:
                return None  # whose it is takes a read: the caller looks (with or without a watch)
            return LeaderNode(
                owner=int(stat.ephemeralOwner),
                epoch=int(stat.czxid),
                identity=str(data.get("identity", "")),
                acquired_at=str(data.get("acquired_at", "")),
            )

        return self._call(create)

    def resign(self, node: LeaderNode) -> None:
        def delete() -> None:
            stat = self._client.exists_async(self.leader_path).get(timeout=self.operation_timeout)
            if stat is None or stat.ephemeralOwner != self.session_id() or stat.czxid != node.epoch:
                return
            # The version pins the delete to the node we just looked at.
            with contextlib.suppress(NoNodeError, BadVersionError):
                self._client.delete_async(self.leader_path, version=stat.version).get(
                    timeout=self.operation_timeout
                )

        self._call(delete)

    def members(self) -> list[Member]:
        def read() -> list[Member]:
            try:
                children = self._client.get_children_async(self.members_path).get(
                    timeout=self.operation_timeout
                )
            except NoNodeError:
                return []
            found: list[tuple[str, Member]] = []
            for child in children:
                try:
                    data, stat = self._client.get_async(f"{self.members_path}/{child}").get(
                        timeout=self.operation_timeout
                    )
                except NoNodeError:
                    continue  # left while we were reading
                found.append((child.rsplit("-", 1)[-1], Member(int(stat.ephemeralOwner), _decode(data))))
            return [member for _seq, member in sorted(found, key=lambda item: item[0])]

        return self._call(read)

    # -- switchover and history -------------------------------------------------------------
    def switchover_request(self) -> SwitchoverRequest | None:
        return self._request

    def switchover_settled(self) -> bool:
        return self._request_read == self._request_changes

    def _on_request_watch(self, event: WatchedEvent) -> None:
        # kazoo's callback thread, in the order of the changes: mark the copy stale at once (a
        # deletion of the leader node that came after this change is dispatched after it), then
        # re-read it (and re-arm the watch) without blocking this thread.
        with self._lock:
            self._request_changes += 1
            changes = self._request_changes
        self._notify()
        self._reread_request(changes)

    def _reread_request(self, changes: int | None = None) -> None:
        """Re-read the request (and re-arm its watch) without blocking; the answer settles the copy
        for ``changes`` (default: every change seen so far)."""
        if changes is None:
            with self._lock:
                changes = self._request_changes
        seen = changes
        try:
            reply = self._client.get_async(self.switchover_path, watch=self._on_request_watch)
        except _ERRORS:
            return  # not connected: the next CONNECTED, or prepare(), reads it again
        reply.rawlink(lambda result: self._on_request_read(result, seen))

    def _on_request_read(self, result: Any, changes: int) -> None:
        try:
            data, stat = result.get(timeout=0)
        except NoNodeError:
            data, stat = b"{}", None
        except Exception:  # a failed read means connection trouble: Init's prepare() reads it again
            return
        self._store_request(data, -1 if stat is None else int(stat.version), changes)
        self._notify()

    def _read_request(self) -> None:
        with self._lock:
            changes = self._request_changes
        try:
            data, stat = self._client.get_async(self.switchover_path, watch=self._on_request_watch).get(
                timeout=self.operation_timeout
            )
        except NoNodeError:
            data, stat = b"{}", None
        self._store_request(data, -1 if stat is None else int(stat.version), changes)

    def _store_request(self, data: bytes, version: int, changes: int) -> None:
        with self._lock:
            if changes < self._request_read:
                return  # an older read answering late
            self._request = _parse_request(_decode(data))
            self._request_version = version
            self._request_read = max(self._request_read, changes)

    def request_switchover(self, request: SwitchoverRequest) -> None:
        def write() -> None:
            data, stat = self._client.get_async(self.switchover_path).get(timeout=self.operation_timeout)
            if _parse_request(_decode(data)) is not None:
                raise SwitchoverBusyError("another switchover is pending")
            body = json.dumps(
                {
                    "id": request.id,
                    "from_epoch": request.from_epoch,
                    "from_identity": request.from_identity,
                    "to": request.to,
                    "requested_at": request.requested_at,
                    "expires_in": request.expires_in,
                }
            ).encode()
            try:
                self._client.set_async(self.switchover_path, body, version=stat.version).get(
                    timeout=self.operation_timeout
                )
            except BadVersionError:
                raise SwitchoverBusyError("another switchover was requested at the same moment") from None

        self._call(write)

    def clear_switchover(self, request_id: str) -> None:
        def clear() -> None:
            data, stat = self._client.get_async(self.switchover_path).get(timeout=self.operation_timeout)
            pending = _parse_request(_decode(data))
            if pending is None or pending.id != request_id:
                return
            with contextlib.suppress(BadVersionError):
                self._client.set_async(self.switchover_path, b"{}", version=stat.version).get(
                    timeout=self.operation_timeout
                )

        with contextlib.suppress(CoordinationError):
            self._call(clear)

    def history(self) -> list[TermRecord]:
        def read() -> list[TermRecord]:
            try:
                data, _stat = self._client.get_async(self.history_path).get(timeout=self.operation_timeout)
            except NoNodeError:
                return []
            return _parse_terms(_decode(data))

        return self._call(read)

    def begin_term_record(self, record: TermRecord) -> TermRecord | None:
        def write() -> TermRecord | None:
            for _ in range(_HISTORY_ATTEMPTS):
                data, stat = self._client.get_async(self.history_path).get(timeout=self.operation_timeout)
                terms = _parse_terms(_decode(data))
                if terms and terms[-1].epoch == record.epoch:
                    self._history = (terms, int(stat.version))  # a resumed term: already there
                    return None
                previous = terms[-1] if terms else None
                if previous is not None and previous.ended is None:
                    previous = dataclasses.replace(previous, ended=record.began, reason="expired")
                    terms[-1] = previous
                terms = [*terms, record][-HISTORY_TERMS:]
                try:
                    written = self._client.set_async(
                        self.history_path, _encode_terms(terms), version=stat.version
                    ).get(timeout=self.operation_timeout)
                except BadVersionError:
                    continue  # someone recorded an end meanwhile: read again
                self._history = (terms, int(written.version))
                return previous
            return None

        return self._call(write)

    def end_term_record(self, epoch: int, reason: str, ended: str) -> None:
        cached = self._history
        if cached is None or not cached[0] or cached[0][-1].epoch != epoch:
            return
        terms, version = cached
        terms = [*terms[:-1], dataclasses.replace(terms[-1], ended=ended, reason=reason)]
        self._history = None
        # Not waited for: the server processes our requests in order, so a resign or close sent
        # after it finds it done; a conflicting write (nobody else writes our open term) only loses it.
        with contextlib.suppress(*_ERRORS):
            self._client.set_async(self.history_path, _encode_terms(terms), version=version)

    def _ensure_chroot(self) -> None:
        """Create the chroot if it is missing, with ZooKeeper's open ACL (it may be shared by several
        services). Inside a chrooted session "/" is the chroot, which it cannot create: a short
        session on the servers alone does it. Costs one read when the chroot exists."""
        if self._chroot is None or self._client.exists_async("/").get(timeout=self.operation_timeout):
            return
        outside = KazooClient(hosts=self._servers, **self._options)
        try:
            outside.start(timeout=self.operation_timeout * 3)
            parts = self._chroot.strip("/").split("/")
            for depth in range(1, len(parts) + 1):
                with contextlib.suppress(NodeExistsError):
                    outside.create_async("/" + "/".join(parts[:depth]), b"", acl=OPEN_ACL_UNSAFE).get(
                        timeout=self.operation_timeout
                    )
        finally:
            with contextlib.suppress(*_ERRORS):
                outside.stop()
                outside.close()

    def _ensure_tree(self) -> None:
        """Create the chroot, the election path, ``members``, ``candidates``, ``switchover`` and
        ``history`` if missing. Ancestors
        of the election path get ZooKeeper's open ACL, not ours: they may be shared with other
        applications."""
        self._ensure_chroot()
        parts = self.members_path.strip("/").split("/")
        depth_of_election_path = len(parts) - 1
        paths = ["/" + "/".join(parts[:depth]) for depth in range(1, len(parts) + 1)]
        for depth, path in enumerate([*paths, self.candidates_path], start=1):
            acl = OPEN_ACL_UNSAFE if depth < depth_of_election_path else None  # None: default_acl
            with contextlib.suppress(NodeExistsError):
                self._client.create_async(path, b"", acl=acl).get(timeout=self.operation_timeout)
        for path, empty in ((self.switchover_path, b"{}"), (self.history_path, b'{"terms": []}')):
            with contextlib.suppress(NodeExistsError):
                self._client.create_async(path, empty).get(timeout=self.operation_timeout)

    def _call(self, func: Callable[..., T], *args: Any) -> T:
        """Run a server call, translating kazoo's failures into CoordinationError."""
        if not self._started:
            raise CoordinationError("ZooKeeper client is closed")
        try:
            return func(*args)
        except KazooTimeoutError as exc:
            raise CoordinationError(f"no answer from ZooKeeper within {self.operation_timeout:g}s") from exc
        except NoAuthError as exc:
            # An ACL naming credentials this session lacks (say, no --zk-auth): the caller's mistake.
            raise PermissionDeniedError(
                "NoAuthError: not authorized by the node's ACL (no --zk-auth, or other credentials)"
            ) from exc
        except KazooException as exc:
            raise CoordinationError(f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc
