"""WebRTC signaling for rtclab: a server to run inside the kernel and a client for peers.

The protocol (:mod:`.protocol`), the hub (:mod:`.hub`: rooms and per-connection rules,
messages in, outcomes out), frame splitting (:mod:`.frames`), :mod:`.rules` (rate limit,
liveness, Origin, tokens), :mod:`.http` and :mod:`.metrics` are pure and transport-free;
:mod:`.server` (with :mod:`.connection`) and :mod:`.client` are thin asyncio adapters around
them, and :mod:`.cluster` shares rooms between server processes through Redis.
:mod:`.runner` is the stand-alone server's command line (``python -m rtclab.signaling``).
"""

from __future__ import annotations

from .client import SignalingClient, SignalingError
from .http import http_response
from .hub import Hub, Outcome
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
from .rules import TokenBucket
from .server import EventListener, Listener, SignalingServer

__all__ = [
    "ERROR_CODES",
    "MAX_ID_LENGTH",
    "MAX_MESSAGE_SIZE",
    "ClientMessage",
    "ErrorCode",
    "ErrorMessage",
    "EventListener",
    "Hub",
    "Join",
    "Leave",
    "Listener",
    "Outcome",
    "PeerJoined",
    "PeerLeft",
    "ProtocolError",
    "Relay",
    "Relayed",
    "RoomJoined",
    "ServerMessage",
    "SignalingClient",
    "SignalingError",
    "SignalingServer",
    "TokenBucket",
    "http_response",
    "parse",
    "render_prometheus",
]
