"""The signaling hub: rooms and per-connection rules as one object, outcomes as values (pure).

A connection's message goes in; an :class:`Outcome` comes out: the messages to deliver,
the events that happened (:class:`Joined`, :class:`Left`, :class:`Refused`, ...) and the
connections to close. Nothing here touches a socket, a clock or a callback, so every rule
is tested without a server, and the asyncio adapter (:mod:`.server`) only carries out the
outcome; it never has to work out what happened by comparing state before and after.

Rules the reference server lacks, enforced here so every transport gets them:

- identity is bound to the connection at ``join``; ``from`` on relays is always that
  identity, whatever the client wrote;
- a ``userId`` already present in a room is refused (``duplicate-user``), never taken over;
- one room per connection (``already-joined``), relays only reach other members of the
  sender's room (``unknown-peer``, ``self-addressed``), nothing but ``join`` works before
  joining (``not-joined``);
- optional tokens, per server and per room (``unauthorized``, then close 1008: no guessing
  tokens on one socket);
- caps on clients (``server-full``, then close 1013), room size (``room-full``) and the
  number of rooms (``too-many-rooms``); a token bucket per connection (``rate-limited``);
- ``stats`` reports are accepted only from joined members and never relayed: they come out
  as :class:`Reported` with the identity bound at ``join``.

Members may also be *remote* (another server process, see :mod:`.cluster`): they are added
with :meth:`Hub.add_remote`, receive relays like anyone, but never room notifications from
here — their own process tells them. With :attr:`Hub.registry` set, a join that passes the
local checks comes out as :class:`JoinRequested` for the shared registry to settle, and
:meth:`Hub.seat` completes it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Generic, Protocol, TypeAlias, TypeVar

from .protocol import (
    MAX_MESSAGE_SIZE,
    ClientMessage,
    ErrorCode,
    ErrorMessage,
    Join,
    Leave,
    PeerJoined,
    PeerLeft,
    ProtocolError,
    Relay,
    Relayed,
    RoomJoined,
    ServerMessage,
    Stats,
    from_suffix,
    parse,
)
from .rules import TokenBucket, room_credential_ok

__all__ = [
    "Close",
    "Connected",
    "Contested",
    "Event",
    "Hub",
    "JoinRequested",
    "Joined",
    "Left",
    "Limits",
    "Outcome",
    "Recipient",
    "Refused",
    "Reported",
]

C = TypeVar("C", bound=Hashable)


class Recipient(Protocol):
    """What the server seats in its hub: a local connection, or a remote member's proxy
    (:mod:`.cluster`); either takes an encoded frame."""

    label: str

    def send(self, payload: bytes) -> None: ...

    def __hash__(self) -> int: ...


# --------------------------------------------------------------------------- outcome values


@dataclass(frozen=True, slots=True)
class _About(Generic[C]):
    """An event or a close: each concerns one connection."""

    conn: C


@dataclass(frozen=True, slots=True)
class Connected(_About[C]):
    """A client was admitted."""


@dataclass(frozen=True, slots=True)
class _Membership(_About[C]):
    room_id: str
    user_id: str


@dataclass(frozen=True, slots=True)
class Joined(_Membership[C]):
    """``conn`` is now ``user_id`` in ``room_id``."""


@dataclass(frozen=True, slots=True)
class Left(_Membership[C]):
    """``conn`` left ``room_id`` (``leave`` or disconnect); it was ``user_id`` there."""


@dataclass(frozen=True, slots=True)
class Refused(_About[C]):
    """``conn`` was refused; it also gets an ``error`` with this code among the deliveries."""

    code: ErrorCode
    message: str


@dataclass(frozen=True, slots=True)
class Reported(_Membership[C]):
    """A joined member's ``stats`` report, under the identity bound at ``join``."""

    rows: tuple[dict[str, Any], ...]


@dataclass(frozen=True, slots=True)
class JoinRequested(_Membership[C]):
    """With :attr:`Hub.registry`: the join passed the local checks; ask the registry, then
    :meth:`Hub.seat` (or :meth:`Hub.refuse`)."""


@dataclass(frozen=True, slots=True)
class Contested(_About[C]):
    """Someone asked for the seat ``conn`` holds (``duplicate-user``). The seat is never
    taken over; the adapter checks that ``conn`` is still alive (a peer whose NAT rebooted
    comes back under its own name while its old TCP connection is not yet known dead)."""


Event: TypeAlias = (
    Connected[C] | Joined[C] | Left[C] | Refused[C] | Reported[C] | JoinRequested[C] | Contested[C]
)
"""Everything an :class:`Outcome` can report."""


@dataclass(frozen=True, slots=True)
class Close(_About[C]):
    """Close ``conn`` with this WebSocket close code, after its deliveries."""

    code: int
    reason: str


_NONE: Final[tuple[()]] = ()


class Outcome(Generic[C]):
    """What to do after one input, in order: deliver, then report events, then close.

    A plain slotted class (not a dataclass) because one is built per relayed message.
    """

    __slots__ = ("closes", "deliveries", "events")

    def __init__(
        self,
        deliveries: list[tuple[C, ServerMessage]] | None = None,
        events: Sequence[Event[C]] = _NONE,
        closes: Sequence[Close[C]] = _NONE,
    ) -> None:
        self.deliveries: list[tuple[C, ServerMessage]] = [] if deliveries is None else deliveries
        self.events = events
        self.closes = closes

    def __repr__(self) -> str:
        return f"Outcome({self.deliveries!r}, {list(self.events)!r}, {list(self.closes)!r})"


# --------------------------------------------------------------------------- the hub


class _Client:
    """One admitted connection: its rate bucket, handshake credential and seat."""

    __slots__ = ("bucket", "credential", "room", "room_id", "suffix", "user_id")

    def __init__(self, bucket: TokenBucket | None, credential: str | None) -> None:
        self.bucket = bucket
        self.credential = credential
        self.room: dict[str, Any] | None = None  # the seat's room (userId -> conn), if joined
        self.room_id = ""
        self.user_id = ""
        self.suffix = b""  # from_suffix(user_id), built once per join for the relay path


@dataclass(frozen=True, slots=True)
class Limits:
    """What a server admits; each cap refuses with its own error code (``None``: no cap)."""

    max_message_size: int = MAX_MESSAGE_SIZE
    max_room_size: int | None = None
    """Most members in one room (``room-full``)."""
    max_rooms: int | None = None
    """Most rooms at once (``too-many-rooms``)."""
    max_clients: int | None = None
    """Most connections at once (``server-full``)."""
    token: str | None = None
    """Server-wide token every ``join`` must present (``None``: open server)."""
    room_tokens: Mapping[str, str] = field(default_factory=dict)
    """Per-room tokens; a room listed here needs its own token instead of :attr:`token`."""
    rate: float | None = None
    """Messages per second per connection after :attr:`burst` (``None``: unlimited)."""
    burst: int = 1000


class Hub(Generic[C]):
    """All rooms and connections of one server. ``C`` is whatever identifies a connection
    for the caller (the server uses its connection objects, saving a lookup per message).

    Every input returns an :class:`Outcome`; nothing a client can send makes it raise.
    Feeding a connection that was never :meth:`connect` ed is the caller's bug
    (``ValueError``).
    """

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits if limits is not None else Limits()
        """What this hub admits (sizes, caps, tokens, rate)."""
        self.registry = False
        """Joins are settled by a shared registry (:mod:`.cluster`): see :class:`JoinRequested`."""
        self._clients: dict[C, _Client] = {}
        self._rooms: dict[str, dict[str, C]] = {}  # roomId -> userId -> connection
        self.relayed = 0
        """Relayed messages delivered to a recipient."""
        self.errors: Counter[str] = Counter()
        """Refusals, by code."""
        self.stats_reports = 0
        """``stats`` reports accepted."""

    # ------------------------------------------------------------------ queries

    @property
    def connections(self) -> int:
        return len(self._clients)

    @property
    def room_count(self) -> int:
        return len(self._rooms)

    def rooms(self) -> dict[str, list[str]]:
        """Snapshot: roomId -> userIds (join order)."""
        return {room: list(members) for room, members in self._rooms.items()}

    def user_of(self, conn: C) -> str | None:
        client = self._clients.get(conn)
        return None if client is None or client.room is None else client.user_id

    def room_of(self, conn: C) -> str | None:
        client = self._clients.get(conn)
        return None if client is None or client.room is None else client.room_id

    def is_local(self, conn: C) -> bool:
        """True for connections admitted here, False for remote members (and gone ones)."""
        return conn in self._clients

    def members(self, room_id: str) -> dict[str, C]:
        """userId -> connection (local or remote) of one room; empty if there is no such room."""
        return dict(self._rooms.get(room_id, {}))

    def member(self, room_id: str, user_id: str) -> C | None:
        """The connection (local or remote) of ``user_id`` in ``room_id``, if any."""
        room = self._rooms.get(room_id)
        return None if room is None else room.get(user_id)

    # ------------------------------------------------------------------ connections

    def connect(self, conn: C, now: float = 0.0, credential: str | None = None) -> Outcome[C]:
        """Admit a client (``now``: any monotonic seconds, for its rate bucket;
        ``credential``: the token it presented during the handshake), or refuse it with
        ``server-full`` and close 1013."""
        if conn in self._clients:
            raise ValueError(f"connection {conn!r} is already connected")
        limits = self.limits
        if limits.max_clients is not None and len(self._clients) >= limits.max_clients:
            out = self.refuse(conn, "server-full", "too many clients; try again later")
            out.closes = (Close(conn, 1013, "server full"),)
            return out
        bucket = None if limits.rate is None else TokenBucket(limits.rate, limits.burst, now)
        self._clients[conn] = _Client(bucket, credential)
        return Outcome(None, (Connected(conn),))

    def disconnect(self, conn: C) -> Outcome[C]:
        """Forget ``conn``; its room hears ``peer-left``. Unknown connections are ignored."""
        client = self._clients.pop(conn, None)
        if client is None or client.room is None:
            return Outcome()
        return self._unseat(conn, client)

    # ------------------------------------------------------------------ messages

    def admit(self, conn: C, now: float) -> Outcome[C] | None:
        """The rate rule for one message from ``conn`` at ``now``: ``None`` to go on, else
        the refusal. Checked before parsing, so a flood costs a float update per frame."""
        bucket = self._client(conn).bucket
        if bucket is None or bucket.take(now):
            return None
        return self.refuse(conn, "rate-limited", "too many messages; slow down")

    def receive_data(self, conn: C, data: str | bytes, now: float = 0.0) -> Outcome[C]:
        """One frame from ``conn`` at ``now``: rate rule, parse, then :meth:`receive`."""
        try:
            client = self._clients[conn]
        except KeyError:
            raise ValueError(f"connection {conn!r} is not connected") from None
        bucket = client.bucket
        if bucket is not None and not bucket.take(now):
            return self.refuse(conn, "rate-limited", "too many messages; slow down")
        return self._receive(conn, client, parse(data, max_size=self.limits.max_message_size))

    def receive(self, conn: C, message: ClientMessage | ProtocolError) -> Outcome[C]:
        """Handle one parsed message (or parse error) from ``conn``."""
        return self._receive(conn, self._client(conn), message)

    def _receive(
        self, conn: C, client: _Client, message: ClientMessage | ProtocolError
    ) -> Outcome[C]:
        if type(message) is Relay:
            room = client.room
            if room is None:
                return self.refuse(conn, "not-joined", "join a room first")
            target = room.get(message.to)
            if target is None:
                return self.refuse(
                    conn, "unknown-peer", f"no peer {message.to!r} in room {client.room_id!r}"
                )
            if target is conn:
                return self.refuse(
                    conn,
                    "self-addressed",
                    f"{message.type} addressed to yourself; send it to another member",
                )
            self.relayed += 1
            return Outcome([(target, Relayed(message, client.user_id, client.suffix))])
        if type(message) is Join:
            return self._join(conn, client, message)
        if type(message) is Leave:
            if client.room is None:
                return self.refuse(conn, "not-joined", "not in a room")
            if message.room_id is not None and message.room_id != client.room_id:
                return self.refuse(conn, "not-joined", f"not in room {message.room_id!r}")
            return self._unseat(conn, client)
        if type(message) is ProtocolError:
            return self.refuse(conn, message.code, message.message)
        if type(message) is Stats:
            if client.room is None:
                return self.refuse(conn, "not-joined", "join a room first")
            self.stats_reports += 1
            return Outcome(None, (Reported(conn, client.room_id, client.user_id, message.rows),))
        raise TypeError(f"not a client message: {message!r}")

    def refuse(self, conn: C, code: ErrorCode, text: str) -> Outcome[C]:
        """A counted refusal: ``conn`` gets an ``error``. Also for refusals its transport
        makes (a frame too large, an internal error, a registry's answer)."""
        self.errors[code] += 1
        return Outcome([(conn, ErrorMessage(code, text))], (Refused(conn, code, text),))

    # ------------------------------------------------------------------ joining

    def check_join(self, conn: C, msg: Join) -> Outcome[C] | None:
        """The refusal for ``msg`` from ``conn``, or ``None`` if it may join.

        With :attr:`registry`, duplicates and caps are left to the registry (this
        process's view of other processes' members may be a moment old).
        """
        client = self._client(conn)
        if client.room is not None:
            return self.refuse(
                conn, "already-joined", f"already in room {client.room_id!r}; leave first"
            )
        token = msg.token if msg.token is not None else client.credential
        if (self.limits.token is not None or self.limits.room_tokens) and not room_credential_ok(
            msg.room_id, token, server_token=self.limits.token, room_tokens=self.limits.room_tokens
        ):
            out = self.refuse(conn, "unauthorized", f"a valid token is needed for {msg.room_id!r}")
            out.closes = (Close(conn, 1008, "unauthorized"),)
            return out
        if self.registry:
            return None
        room = self._rooms.get(msg.room_id)
        if room is None:
            if self.limits.max_rooms is not None and len(self._rooms) >= self.limits.max_rooms:
                return self.refuse(conn, "too-many-rooms", f"at most {self.limits.max_rooms} rooms")
        elif msg.user_id in room:
            out = self.refuse(
                conn, "duplicate-user", f"user {msg.user_id!r} is already in room {msg.room_id!r}"
            )
            out.events = (*out.events, Contested(room[msg.user_id]))
            return out
        elif self.limits.max_room_size is not None and len(room) >= self.limits.max_room_size:
            return self.refuse(
                conn, "room-full", f"room {msg.room_id!r} is full ({self.limits.max_room_size})"
            )
        return None

    def seat(self, conn: C, room_id: str, user_id: str) -> Outcome[C]:
        """Seat an already-checked local ``conn``: it gets ``room-joined`` with the peers
        present, every local peer gets ``peer-joined``."""
        client = self._client(conn)
        room = self._rooms.get(room_id)
        if room is None:
            room = self._rooms[room_id] = {}
        peers = tuple(room)
        room[user_id] = conn
        client.room = room
        client.room_id = room_id
        client.user_id = user_id
        client.suffix = from_suffix(user_id)
        out: list[tuple[C, ServerMessage]] = [(conn, RoomJoined(room_id, peers))]
        if peers:
            joined = PeerJoined(user_id)
            clients = self._clients
            out.extend((c, joined) for c in room.values() if c is not conn and c in clients)
        return Outcome(out, (Joined(conn, room_id, user_id),))

    def _join(self, conn: C, client: _Client, msg: Join) -> Outcome[C]:
        refusal = self.check_join(conn, msg)
        if refusal is not None:
            return refusal
        if self.registry:
            return Outcome(None, (JoinRequested(conn, msg.room_id, msg.user_id),))
        return self.seat(conn, msg.room_id, msg.user_id)

    def _unseat(self, conn: C, client: _Client) -> Outcome[C]:
        room = client.room
        assert room is not None
        room_id, user_id = client.room_id, client.user_id
        client.room = None
        del room[user_id]
        events = (Left(conn, room_id, user_id),)
        if not room:
            del self._rooms[room_id]
            return Outcome(None, events)
        left = PeerLeft(user_id)
        clients = self._clients
        return Outcome([(c, left) for c in room.values() if c in clients], events)

    def _client(self, conn: C) -> _Client:
        try:
            return self._clients[conn]
        except KeyError:
            raise ValueError(f"connection {conn!r} is not connected") from None

    # ------------------------------------------------------------------ remote members

    def add_remote(self, remote: C, room_id: str, user_id: str) -> Outcome[C]:
        """A member of another process joined ``room_id``; local members hear ``peer-joined``.
        Replaces a stale entry of the same name (the registry already settled who owns it)."""
        room = self._rooms.setdefault(room_id, {})
        old = room.get(user_id)
        clients = self._clients
        if old is not None and old in clients:
            return Outcome()  # ours: never let a remote event unseat a local member
        room[user_id] = remote
        joined = PeerJoined(user_id)
        return Outcome([(c, joined) for c in room.values() if c in clients])

    def remove_remote(self, room_id: str, user_id: str) -> Outcome[C]:
        """A remote member left; local members hear ``peer-left``."""
        room = self._rooms.get(room_id)
        clients = self._clients
        if room is None or user_id not in room or room[user_id] in clients:
            return Outcome()
        del room[user_id]
        if not room:
            del self._rooms[room_id]
            return Outcome()
        left = PeerLeft(user_id)
        return Outcome([(c, left) for c in room.values() if c in clients])
