"""WebRTC signaling for rtclab: a server to run inside the kernel and a client for peers.

The protocol (:mod:`.protocol`) and room rules (:mod:`.rooms`) are pure and transport-free;
:mod:`.server` and :mod:`.client` are thin asyncio adapters around them.
"""

from __future__ import annotations

from .client import SignalingClient, SignalingError
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
from .server import Listener, SignalingServer, serve_main

__all__ = [
    "ERROR_CODES",
    "MAX_ID_LENGTH",
    "MAX_MESSAGE_SIZE",
    "ClientMessage",
    "ErrorCode",
    "ErrorMessage",
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
    "parse",
    "serve_main",
]
