"""aiortc peers that join signaling rooms as a mesh, with synthetic media and data channels."""

from ..model import ChannelCounters, ConnectionCounters
from .channels import CHAT, CURSORS, Channel
from .media import TestPatternTrack, ToneTrack
from .peer import ChatMessage, Peer, PeerEvent, RemoteConnection

__all__ = [
    "CHAT",
    "CURSORS",
    "Channel",
    "ChannelCounters",
    "ChatMessage",
    "ConnectionCounters",
    "Peer",
    "PeerEvent",
    "RemoteConnection",
    "TestPatternTrack",
    "ToneTrack",
]
