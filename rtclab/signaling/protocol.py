"""Signaling wire protocol: message types, parsing, validation and serialisation (pure, no I/O).

JSON text frames, compatible with the reference Node server: the client sends ``join``,
``offer``/``answer``/``ice-candidate`` and ``leave`` (and, rtclab's own addition, ``stats``:
a browser reporting its getStats rows; never relayed); the server sends ``room-joined``,
``peer-joined``, relayed messages with a server-set ``from``, ``peer-left`` and ``error``.

Relayed messages are the hot path. To avoid re-serialising them, :func:`parse` keeps the
client's original bytes and the server splices ``"from"`` in front of the closing brace.
That is only safe when the client did not send a top-level ``from`` itself (JSON parsers
disagree on duplicate keys), so such messages are re-serialised instead.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias, get_args

__all__ = [
    "ERROR_CODES",
    "MAX_ID_LENGTH",
    "MAX_MESSAGE_SIZE",
    "MAX_STATS_ROWS",
    "MAX_TOKEN_LENGTH",
    "RELAY_TYPES",
    "ClientMessage",
    "ErrorCode",
    "ErrorMessage",
    "Join",
    "Leave",
    "PeerJoined",
    "PeerLeft",
    "ProtocolError",
    "Relay",
    "RelayType",
    "Relayed",
    "RoomJoined",
    "ServerMessage",
    "Stats",
    "encode",
    "from_suffix",
    "parse",
]

MAX_ID_LENGTH: Final = 128
"""Longest accepted ``roomId`` / ``userId`` / ``to`` (characters)."""

MAX_TOKEN_LENGTH: Final = 1024
"""Longest accepted ``token`` in a ``join`` (characters)."""

MAX_MESSAGE_SIZE: Final = 64 * 1024
"""Largest accepted message (bytes). A big SDP is ~10-30 KB; anything larger is abuse."""

MAX_STATS_ROWS: Final = 64
"""Most rows in one ``stats`` message (a mesh of 15 remotes x 4 rows fits)."""

MAX_STATS_FIELDS: Final = 40
"""Most fields in one stats row (a browser row fills about 30 of the samples frame's columns)."""

MAX_STATS_STRING: Final = 256
"""Longest string value in a stats row (an IPv6 address with port fits easily)."""

RelayType: TypeAlias = Literal["offer", "answer", "ice-candidate"]
RELAY_TYPES: Final[frozenset[str]] = frozenset(get_args(RelayType))

ErrorCode: TypeAlias = Literal[
    "invalid-json",
    "invalid-message",
    "unknown-type",
    "not-joined",
    "already-joined",
    "duplicate-user",
    "unknown-peer",
    "self-addressed",
    "message-too-large",
    "unauthorized",
    "forbidden-origin",
    "rate-limited",
    "room-full",
    "too-many-rooms",
    "server-full",
    "server-shutdown",
    "unavailable",
    "internal-error",
]
ERROR_CODES: Final[tuple[ErrorCode, ...]] = get_args(ErrorCode)
"""Every ``code`` an ``error`` message can carry. Refusals of a frame keep the connection
open unless noted: ``message-too-large`` is followed by close 1009, ``unauthorized`` by close
1008, ``server-full`` by close 1013 and ``server-shutdown`` by close 1001.
``forbidden-origin`` is the JSON body of an HTTP 403 (no WebSocket is opened for it)."""

# Payload field carried by each relayed type; the value is opaque and relayed untouched.
_PAYLOAD_FIELD: Final[dict[str, str]] = {
    "offer": "sdp",
    "answer": "sdp",
    "ice-candidate": "candidate",
}


def _reject_constant(name: str) -> Any:
    # Python's json accepts NaN/Infinity, browsers' JSON.parse does not: a relayed frame
    # must stay parseable by the recipient, so refuse them at the door.
    raise ValueError(f"{name} is not valid JSON")


# A module-level decoder costs the same per call as json.loads() without keyword arguments.
_decoder: Final = json.JSONDecoder(parse_constant=_reject_constant)
_scan_once: Final[Callable[[str, int], tuple[Any, int]]] = _decoder.scan_once  # type: ignore[attr-defined]
_compact: Final = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


# --------------------------------------------------------------------------- client → server


@dataclass(frozen=True, slots=True)
class Join:
    """``{"type": "join", "roomId", "userId", "token"?}``.

    ``token`` is the optional credential for servers or rooms that require one: the field a
    browser can always set (its WebSocket API cannot send headers). It is never echoed by
    :meth:`to_dict`, so observers and event logs do not collect secrets.
    """

    room_id: str
    user_id: str
    token: str | None = dataclasses.field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"type": "join", "roomId": self.room_id, "userId": self.user_id}


@dataclass(frozen=True, slots=True)
class Leave:
    """``{"type": "leave", "roomId"?}``; ``roomId`` is optional (the server knows the room)."""

    room_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": "leave"}
        if self.room_id is not None:
            d["roomId"] = self.room_id
        return d


@dataclass(slots=True)  # not frozen: built once per relayed message, treat as immutable
class Relay:
    """An ``offer``/``answer``/``ice-candidate`` addressed to one peer.

    ``body`` is the whole parsed object (extra fields are relayed, as the reference does).
    ``head`` is the original frame minus its closing ``}`` when ``from`` may be spliced in,
    else ``None``.
    """

    type: RelayType
    to: str
    body: dict[str, Any]
    head: bytes | None = None

    @property
    def payload(self) -> Any:
        """The opaque ``sdp`` or ``candidate`` value."""
        return self.body[_PAYLOAD_FIELD[self.type]]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.body)


@dataclass(frozen=True, slots=True)
class Stats:
    """``{"type": "stats", "rows": [{...}, ...]}``: a browser's own getStats, as sample rows.

    Not part of the reference protocol: rtclab's browser client reports what only it can
    measure, so browser rows land in the lab's samples frame. It is never relayed; the
    server hands it to its stats listeners. Validation here is structural only (flat rows
    of scalars, bounded counts and lengths); which columns count is the collector's call.
    """

    rows: tuple[dict[str, Any], ...]

    def to_dict(self) -> dict[str, Any]:
        return {"type": "stats", "rows": [dict(r) for r in self.rows]}


ClientMessage: TypeAlias = Join | Relay | Leave | Stats


@dataclass(frozen=True, slots=True)
class ProtocolError:
    """Why a frame was refused; returned (not raised) by :func:`parse`."""

    code: ErrorCode
    message: str

    def to_dict(self) -> dict[str, Any]:
        """What observers see for a refused frame (the frame itself may not be JSON)."""
        return {"type": "invalid", "code": self.code, "message": self.message}

    def to_error(self) -> ErrorMessage:
        return ErrorMessage(self.code, self.message)


# --------------------------------------------------------------------------- server → client


class _Encoded:
    """Server messages encode what :meth:`to_dict` says (relays override it for speed)."""

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def encode(self) -> bytes:
        return encode(self.to_dict())


@dataclass(frozen=True, slots=True)
class RoomJoined(_Encoded):
    """Reply to a successful join: who was already in the room."""

    room_id: str
    peers: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"type": "room-joined", "roomId": self.room_id, "peers": list(self.peers)}


@dataclass(frozen=True, slots=True)
class PeerJoined(_Encoded):
    peer_id: str

    def to_dict(self) -> dict[str, Any]:
        return {"type": "peer-joined", "peerId": self.peer_id}


@dataclass(frozen=True, slots=True)
class PeerLeft(_Encoded):
    peer_id: str

    def to_dict(self) -> dict[str, Any]:
        return {"type": "peer-left", "peerId": self.peer_id}


@dataclass(frozen=True, slots=True)
class ErrorMessage(_Encoded):
    code: ErrorCode
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"type": "error", "code": self.code, "message": self.message}


@dataclass(slots=True)  # not frozen: built once per relayed message, treat as immutable
class Relayed(_Encoded):
    """A relay as delivered: the sender's message with ``from`` set by the server.

    ``suffix`` is :func:`from_suffix` of ``sender``, computed once per join rather than
    once per message.
    """

    source: Relay
    sender: str
    suffix: bytes

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.source.body)
        d["from"] = self.sender
        return d

    def encode(self) -> bytes:
        head = self.source.head
        if head is not None:
            return head + self.suffix
        return encode(self.to_dict())


ServerMessage: TypeAlias = RoomJoined | PeerJoined | PeerLeft | Relayed | ErrorMessage


def encode(obj: dict[str, Any]) -> bytes:
    """Compact JSON as UTF-8 (ASCII-escaped, so any peer's parser reads it)."""
    return _compact.encode(obj).encode()


def from_suffix(user_id: str) -> bytes:
    """The bytes that replace a relayed object's closing brace: ``,"from":"<id>"}``."""
    return b',"from":' + _compact.encode(user_id).encode() + b"}"


# --------------------------------------------------------------------------- parsing


def _id_field(obj: dict[str, Any], field: str) -> str | ProtocolError:
    value = obj.get(field)
    if not isinstance(value, str):
        return ProtocolError("invalid-message", f"'{field}' must be a string")
    if not value or len(value) > MAX_ID_LENGTH:
        return ProtocolError(
            "invalid-message", f"'{field}' must be 1 to {MAX_ID_LENGTH} characters"
        )
    return value


def parse(data: str | bytes, *, max_size: int = MAX_MESSAGE_SIZE) -> ClientMessage | ProtocolError:
    """Parse and validate one client frame; never raises.

    ``max_size`` bounds the frame in bytes (UTF-8 for ``str``). Binary frames are accepted
    as UTF-8 JSON, like the reference server does.
    """
    if isinstance(data, str):
        try:
            raw = data.encode()
        except UnicodeEncodeError:  # lone surrogates: cannot come off the wire as text
            return ProtocolError("invalid-json", "frame is not valid UTF-8")
        text = data
    else:
        raw = bytes(data)
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            return ProtocolError("invalid-json", "frame is not valid UTF-8")
    if len(raw) > max_size:
        return ProtocolError("message-too-large", f"message exceeds {max_size} bytes")
    try:
        # The C scanner directly: JSONDecoder.decode() adds two regex matches per call.
        obj, end = _scan_once(text, 0)
        if end != len(text) and text[end:].strip(" \t\n\r"):
            raise ValueError("extra data")
    except StopIteration:  # leading whitespace, or not JSON: let the full decoder decide
        try:
            obj = _decoder.decode(text)
        except (ValueError, RecursionError):
            return ProtocolError("invalid-json", "frame is not valid JSON")
    except (ValueError, RecursionError):
        return ProtocolError("invalid-json", "frame is not valid JSON")
    if type(obj) is not dict:
        return ProtocolError("invalid-message", "message must be a JSON object")
    kind = obj.get("type")
    if type(kind) is not str:
        return ProtocolError("invalid-message", "'type' must be a string")

    field = _PAYLOAD_FIELD.get(kind)
    if field is not None:
        to = obj.get("to")
        if type(to) is not str or not 0 < len(to) <= MAX_ID_LENGTH:
            error = _id_field(obj, "to")
            assert isinstance(error, ProtocolError)
            return error
        if field not in obj:
            return ProtocolError("invalid-message", f"'{field}' is required")
        value = obj[field]
        if type(value) is not dict and not (value is None and field == "candidate"):
            kind_of = "an object or null" if field == "candidate" else "an object"
            return ProtocolError("invalid-message", f"'{field}' must be {kind_of}")
        # Splice only if the client set no top-level "from": with two "from" keys, parsers
        # that keep the first one would believe the client. json.loads validated the text,
        # so after trailing JSON whitespace it ends with the object's closing brace.
        head = None if "from" in obj else raw.rstrip()[:-1]
        return Relay(kind, to, obj, head)  # type: ignore[arg-type]

    if kind == "join":
        room_id = _id_field(obj, "roomId")
        if type(room_id) is ProtocolError:
            return room_id
        user_id = _id_field(obj, "userId")
        if type(user_id) is ProtocolError:
            return user_id
        assert isinstance(room_id, str) and isinstance(user_id, str)
        token = obj.get("token")
        if token is not None and (type(token) is not str or len(token) > MAX_TOKEN_LENGTH):
            return ProtocolError(
                "invalid-message", f"'token' must be a string of at most {MAX_TOKEN_LENGTH}"
            )
        return Join(room_id, user_id, token)

    if kind == "stats":
        return _parse_stats(obj)

    if kind == "leave":
        if obj.get("roomId") is None:
            return Leave(None)
        room_id = _id_field(obj, "roomId")
        if type(room_id) is ProtocolError:
            return room_id
        assert isinstance(room_id, str)
        return Leave(room_id)

    return ProtocolError("unknown-type", f"unknown message type {kind[:64]!r}")


def _parse_stats(obj: dict[str, Any]) -> Stats | ProtocolError:
    rows = obj.get("rows")
    if type(rows) is not list:
        return ProtocolError("invalid-message", "'rows' must be a list")
    if len(rows) > MAX_STATS_ROWS:
        return ProtocolError("invalid-message", f"at most {MAX_STATS_ROWS} rows per message")
    for row in rows:
        if type(row) is not dict or len(row) > MAX_STATS_FIELDS:
            return ProtocolError(
                "invalid-message", f"a row must be an object of at most {MAX_STATS_FIELDS} fields"
            )
        for key, value in row.items():
            if len(key) > MAX_ID_LENGTH:
                return ProtocolError("invalid-message", "stats field name too long")
            if value is None or type(value) in (int, float, bool):
                continue
            if type(value) is not str or len(value) > MAX_STATS_STRING:
                return ProtocolError(
                    "invalid-message",
                    f"stats values must be numbers, booleans, null or strings of at most "
                    f"{MAX_STATS_STRING} characters",
                )
    return Stats(tuple(rows))
