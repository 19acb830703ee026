"""Room state machine: (connection, message) in, [(recipient, message)] out — no I/O, no asyncio.

Rules the reference server lacks, enforced here so every transport gets them:

- identity is bound to the connection at ``join``; ``from`` on relays is always that
  identity, whatever the client wrote;
- a ``userId`` already present in a room is refused (``duplicate-user``), never taken over;
- one room per connection (``already-joined``), relays only reach members of the sender's
  room (``unknown-peer``), nothing but ``join`` works before joining (``not-joined``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

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
    from_suffix,
    parse,
)

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

    def __init__(self, *, max_message_size: int = MAX_MESSAGE_SIZE) -> None:
        self.max_message_size = max_message_size
        self._conns: dict[C, _Member | None] = {}
        self._rooms: dict[str, dict[str, C]] = {}  # roomId -> userId -> connection
        self.relayed = 0
        """Relayed messages delivered to a recipient."""
        self.errors: Counter[str] = Counter()
        """Error replies sent, by code."""

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

    def connect(self, conn: C) -> None:
        if conn in self._conns:
            raise ValueError(f"connection {conn!r} is already connected")
        self._conns[conn] = None

    def disconnect(self, conn: C) -> list[tuple[C, ServerMessage]]:
        """Forget ``conn``; its room hears ``peer-left``. Unknown connections are ignored."""
        member = self._conns.pop(conn, None)
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
        raise TypeError(f"not a client message: {message!r}")

    # ------------------------------------------------------------------ internals

    def _error(self, conn: C, code: ErrorCode, text: str) -> list[tuple[C, ServerMessage]]:
        self.errors[code] += 1
        return [(conn, ErrorMessage(code, text))]

    def _join(self, conn: C, member: _Member | None, msg: Join) -> list[tuple[C, ServerMessage]]:
        if member is not None:
            return self._error(
                conn, "already-joined", f"already in room {member.room_id!r}; leave first"
            )
        room = self._rooms.get(msg.room_id)
        if room is None:
            room = self._rooms[msg.room_id] = {}
        elif msg.user_id in room:
            return self._error(
                conn, "duplicate-user", f"user {msg.user_id!r} is already in room {msg.room_id!r}"
            )
        peers = tuple(room)
        room[msg.user_id] = conn
        self._conns[conn] = _Member(msg.user_id, msg.room_id, from_suffix(msg.user_id))
        out: list[tuple[C, ServerMessage]] = [(conn, RoomJoined(msg.room_id, peers))]
        if peers:
            joined = PeerJoined(msg.user_id)
            out.extend((room[peer], joined) for peer in peers)
        return out

    def _remove(self, member: _Member) -> list[tuple[C, ServerMessage]]:
        room = self._rooms[member.room_id]
        del room[member.user_id]
        if not room:
            del self._rooms[member.room_id]
            return []
        left = PeerLeft(member.user_id)
        return [(conn, left) for conn in room.values()]
