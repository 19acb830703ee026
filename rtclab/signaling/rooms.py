"""Room state machine: (connection, message) in, [(recipient, message)] out — no I/O, no asyncio.

Rules the reference server lacks, enforced here so every transport gets them:

- identity is bound to the connection at ``join``; ``from`` on relays is always that
  identity, whatever the client wrote;
- a ``userId`` already present in a room is refused (``duplicate-user``), never taken over;
- one room per connection (``already-joined``), relays only reach members of the sender's
  room (``unknown-peer``), nothing but ``join`` works before joining (``not-joined``);
- optional tokens, per server and per room (``unauthorized``; the connection is then listed
  in :attr:`Rooms.closing` for the adapter to close: no guessing tokens on one socket);
- caps on room size (``room-full``) and on the number of rooms (``too-many-rooms``);
- ``stats`` reports are accepted only from joined members and never relayed: they go to
  :attr:`Rooms.on_stats` with the identity bound at ``join`` (a client cannot report for
  someone else).

Members may also be *remote* (another server process, see :mod:`.cluster`): they are added
with :meth:`Rooms.add_remote`, receive relays like anyone, but never room notifications
from here — their own process tells them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

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
from .rules import room_credential_ok

__all__ = ["Rooms"]

C = TypeVar("C", bound=Hashable)


@dataclass(slots=True)
class _Member:
    user_id: str
    room_id: str
    suffix: bytes  # from_suffix(user_id), built once per join for the relay hot path


class Rooms(Generic[C]):
    """All rooms of one server. ``C`` is whatever identifies a connection for the caller
    (the adapter uses its connection objects themselves, saving a lookup per message).

    Every method returns the messages to deliver as ``(recipient, message)`` pairs, in
    order; it never raises for anything a client can send.
    """

    def __init__(
        self,
        *,
        max_message_size: int = MAX_MESSAGE_SIZE,
        max_room_size: int | None = None,
        max_rooms: int | None = None,
        token: str | None = None,
        room_tokens: Mapping[str, str] | None = None,
    ) -> None:
        self.max_message_size = max_message_size
        self.max_room_size = max_room_size
        """Most members in one room (``None``: no cap)."""
        self.max_rooms = max_rooms
        """Most rooms at once (``None``: no cap)."""
        self.token = token
        """Server-wide token every ``join`` must present (``None``: open server)."""
        self.room_tokens: dict[str, str] = dict(room_tokens or {})
        """Per-room tokens; a room listed here needs its own token instead of :attr:`token`."""
        self._conns: dict[C, _Member | None] = {}
        self._credentials: dict[C, str] = {}  # token presented at the handshake, if any
        self._rooms: dict[str, dict[str, C]] = {}  # roomId -> userId -> connection
        self.relayed = 0
        """Relayed messages delivered to a recipient."""
        self.errors: Counter[str] = Counter()
        """Error replies sent, by code."""
        self.closing: list[C] = []
        """Connections refused in a way that ends them (``unauthorized``): the adapter
        closes them and clears the list. A side list rather than a new return type keeps
        the relay path free of per-message checks."""
        self.on_stats: Callable[[str, str, tuple[dict[str, Any], ...]], None] | None = None
        """``on_stats(user, room, rows)`` for each ``stats`` report of a joined member. A
        callback (not a returned message) because nothing is delivered to any client."""
        self.stats_reports = 0
        """``stats`` reports accepted."""

    # ------------------------------------------------------------------ queries

    @property
    def connections(self) -> int:
        return len(self._conns)

    @property
    def room_count(self) -> int:
        return len(self._rooms)

    def rooms(self) -> dict[str, list[str]]:
        """Snapshot: roomId -> userIds (join order)."""
        return {room: list(members) for room, members in self._rooms.items()}

    def user_of(self, conn: C) -> str | None:
        member = self._conns.get(conn)
        return None if member is None else member.user_id

    def room_of(self, conn: C) -> str | None:
        member = self._conns.get(conn)
        return None if member is None else member.room_id

    # ------------------------------------------------------------------ events

    def is_local(self, conn: C) -> bool:
        """True for this process's connections, False for remote members."""
        return conn in self._conns

    def members(self, room_id: str) -> dict[str, C]:
        """userId -> connection (local or remote) of one room; empty if there is no such room."""
        return dict(self._rooms.get(room_id, {}))

    def connect(self, conn: C, credential: str | None = None) -> None:
        """A new client; ``credential`` is the token it presented during the handshake."""
        if conn in self._conns:
            raise ValueError(f"connection {conn!r} is already connected")
        self._conns[conn] = None
        if credential is not None:
            self._credentials[conn] = credential

    def disconnect(self, conn: C) -> list[tuple[C, ServerMessage]]:
        """Forget ``conn``; its room hears ``peer-left``. Unknown connections are ignored."""
        member = self._conns.pop(conn, None)
        self._credentials.pop(conn, None)
        if member is None:
            return []
        return self._remove(member)

    def receive_data(self, conn: C, data: str | bytes) -> list[tuple[C, ServerMessage]]:
        """Parse one frame from ``conn`` and handle it."""
        return self.receive(conn, parse(data, max_size=self.max_message_size))

    def receive(
        self, conn: C, message: ClientMessage | ProtocolError
    ) -> list[tuple[C, ServerMessage]]:
        """Handle one parsed message (or parse error) from ``conn``."""
        try:
            member = self._conns[conn]
        except KeyError:
            raise ValueError(f"connection {conn!r} is not connected") from None
        if type(message) is Relay:
            if member is None:
                return self._error(conn, "not-joined", "join a room first")
            target = self._rooms[member.room_id].get(message.to)
            if target is None:
                return self._error(
                    conn, "unknown-peer", f"no peer {message.to!r} in room {member.room_id!r}"
                )
            self.relayed += 1
            return [(target, Relayed(message, member.user_id, member.suffix))]
        if isinstance(message, Join):
            return self._join(conn, member, message)
        if isinstance(message, Leave):
            if member is None:
                return self._error(conn, "not-joined", "not in a room")
            if message.room_id is not None and message.room_id != member.room_id:
                return self._error(conn, "not-joined", f"not in room {message.room_id!r}")
            self._conns[conn] = None
            return self._remove(member)
        if isinstance(message, ProtocolError):
            return self._error(conn, message.code, message.message)
        if isinstance(message, Stats):
            if member is None:
                return self._error(conn, "not-joined", "join a room first")
            self.stats_reports += 1
            if self.on_stats is not None:
                self.on_stats(member.user_id, member.room_id, message.rows)
            return []
        raise TypeError(f"not a client message: {message!r}")

    # ------------------------------------------------------------------ internals

    def _error(self, conn: C, code: ErrorCode, text: str) -> list[tuple[C, ServerMessage]]:
        self.errors[code] += 1
        return [(conn, ErrorMessage(code, text))]

    def member(self, room_id: str, user_id: str) -> C | None:
        """The connection (local or remote) of ``user_id`` in ``room_id``, if any."""
        room = self._rooms.get(room_id)
        return None if room is None else room.get(user_id)

    def check_join(
        self, conn: C, msg: Join, *, registry: bool = False
    ) -> list[tuple[C, ServerMessage]]:
        """The refusal for ``msg`` (one error, counted), or ``[]`` if it may join.

        Split from the join itself so that a cluster can ask this process first, then
        the shared registry: with ``registry=True`` duplicates and caps are left to it
        (this process's view of other processes' members may be a moment old).
        """
        member = self._conns.get(conn)
        if member is not None:
            return self._error(
                conn, "already-joined", f"already in room {member.room_id!r}; leave first"
            )
        token = msg.token if msg.token is not None else self._credentials.get(conn)
        if (self.token is not None or self.room_tokens) and not room_credential_ok(
            msg.room_id, token, server_token=self.token, room_tokens=self.room_tokens
        ):
            self.closing.append(conn)
            return self._error(conn, "unauthorized", f"a valid token is needed for {msg.room_id!r}")
        if registry:
            return []
        room = self._rooms.get(msg.room_id)
        if room is None:
            if self.max_rooms is not None and len(self._rooms) >= self.max_rooms:
                return self._error(conn, "too-many-rooms", f"at most {self.max_rooms} rooms")
        elif msg.user_id in room:
            return self._error(
                conn, "duplicate-user", f"user {msg.user_id!r} is already in room {msg.room_id!r}"
            )
        elif self.max_room_size is not None and len(room) >= self.max_room_size:
            return self._error(
                conn, "room-full", f"room {msg.room_id!r} is full ({self.max_room_size})"
            )
        return []

    def add_member(self, conn: C, room_id: str, user_id: str) -> list[tuple[C, ServerMessage]]:
        """Seat an already-checked local ``conn``: it gets ``room-joined`` with the peers
        present, every local peer gets ``peer-joined``."""
        room = self._rooms.get(room_id)
        if room is None:
            room = self._rooms[room_id] = {}
        peers = tuple(room)
        room[user_id] = conn
        self._conns[conn] = _Member(user_id, room_id, from_suffix(user_id))
        out: list[tuple[C, ServerMessage]] = [(conn, RoomJoined(room_id, peers))]
        if peers:
            joined = PeerJoined(user_id)
            conns = self._conns
            out.extend((c, joined) for c in room.values() if c is not conn and c in conns)
        return out

    def add_remote(self, remote: C, room_id: str, user_id: str) -> list[tuple[C, ServerMessage]]:
        """A member of another process joined ``room_id``; local members hear ``peer-joined``.
        Replaces a stale entry of the same name (the registry already settled who owns it)."""
        room = self._rooms.setdefault(room_id, {})
        old = room.get(user_id)
        if old is not None and old in self._conns:
            return []  # ours: never let a remote event unseat a local member
        room[user_id] = remote
        joined = PeerJoined(user_id)
        conns = self._conns
        return [(c, joined) for c in room.values() if c in conns]

    def remove_remote(self, room_id: str, user_id: str) -> list[tuple[C, ServerMessage]]:
        """A remote member left; local members hear ``peer-left``."""
        room = self._rooms.get(room_id)
        if room is None or user_id not in room or room[user_id] in self._conns:
            return []
        del room[user_id]
        if not room:
            del self._rooms[room_id]
            return []
        left = PeerLeft(user_id)
        conns = self._conns
        return [(c, left) for c in room.values() if c in conns]

    def _join(self, conn: C, member: _Member | None, msg: Join) -> list[tuple[C, ServerMessage]]:
        refusal = self.check_join(conn, msg)
        if refusal:
            return refusal
        return self.add_member(conn, msg.room_id, msg.user_id)

    def _remove(self, member: _Member) -> list[tuple[C, ServerMessage]]:
        room = self._rooms[member.room_id]
        del room[member.user_id]
        if not room:
            del self._rooms[member.room_id]
            return []
        left = PeerLeft(member.user_id)
        conns = self._conns
        return [(conn, left) for conn in room.values() if conn in conns]
