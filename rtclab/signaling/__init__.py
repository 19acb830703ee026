"""WebRTC signaling for rtclab: a server to run inside the kernel and a client for peers.

The protocol (:mod:`.protocol`) and room rules (:mod:`.rooms`) are pure and transport-free;
:mod:`.rules` (rate limit, liveness, Origin, tokens) and :mod:`.metrics` are pure too;
:mod:`.server` and :mod:`.client` are thin asyncio adapters around them, and
:mod:`.cluster` shares rooms between server processes through Redis.
"""

from __future__ import annotations

from .client import SignalingClient, SignalingError
from .metrics import render_prometheus
from .protocol import (
    ERROR_CODES,
    MAX_ID_LENGTH,
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
    parse,
)
from .rooms import Rooms
from .rules import TokenBucket
from .server import EventListener, Listener, SignalingServer, http_response, serve_main

__all__ = [
    "ERROR_CODES",
    "MAX_ID_LENGTH",
    "MAX_MESSAGE_SIZE",
    "ClientMessage",
    "ErrorCode",
    "ErrorMessage",
    "EventListener",
    "Join",
    "Leave",
    "Listener",
    "PeerJoined",
    "PeerLeft",
    "ProtocolError",
    "Relay",
    "Relayed",
    "RoomJoined",
    "Rooms",
    "ServerMessage",
    "SignalingClient",
    "SignalingError",
    "SignalingServer",
    "TokenBucket",
    "http_response",
    "parse",
    "render_prometheus",
    "serve_main",
]
