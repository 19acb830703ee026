"""rtclab: a WebRTC lab you can see and experiment with inside Jupyter."""

from __future__ import annotations

from .ice.config import IceConfig, IceServer
from .lab import Lab
from .peer import ChatMessage, Peer, RemoteConnection
from .signaling import SignalingClient, SignalingError, SignalingServer
from .stats import StatsCollector, read_events_csv, read_samples_csv

__version__ = "0.1.0"

__all__ = [
    "ChatMessage",
    "IceConfig",
    "IceServer",
    "Lab",
    "Peer",
    "RemoteConnection",
    "SignalingClient",
    "SignalingError",
    "SignalingServer",
    "StatsCollector",
    "__version__",
    "read_events_csv",
    "read_samples_csv",
]
