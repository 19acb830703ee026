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
from .hub import Hub, Outcome
from .protocol import ERROR_CODES, ErrorCode, ProtocolError, parse
from .server import EventListener, Listener, SignalingServer

# The message types, rules and HTTP helpers stay in their modules
# (``rtclab.signaling.protocol``, ``.rules``, ``.http``, ``.metrics``).
__all__ = [
    "ERROR_CODES",
    "ErrorCode",
    "EventListener",
    "Hub",
    "Listener",
    "Outcome",
    "ProtocolError",
    "SignalingClient",
    "SignalingError",
    "SignalingServer",
    "parse",
]
