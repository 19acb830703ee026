"""rtclab: a WebRTC lab you can see and experiment with inside Jupyter.

Public names are imported lazily (PEP 562): ``rtclab serve`` and ``python -m
rtclab.signaling`` then load neither aiortc nor pandas, which keeps the stand-alone
signaling server small and quick to start.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from ._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "BandwidthEstimator": "rtclab.cc",
    "ChatMessage": "rtclab.peer",
    "Coturn": "rtclab.ice.coturn",
    "DelayBasedEstimator": "rtclab.cc",
    "bwe_test": "rtclab.experiments",
    "compare_ice_paths": "rtclab.experiments",
    "doctor": "rtclab.ice.turn_doctor",
    "IceConfig": "rtclab.ice.config",
    "IceServer": "rtclab.ice.config",
    "Lab": "rtclab.lab",
    "Link": "rtclab.net",
    "load_test": "rtclab.experiments",
    "LossBasedAimd": "rtclab.cc",
    "Network": "rtclab.net",
    "Peer": "rtclab.peer",
    "RemoteConnection": "rtclab.peer",
    "RemotePeer": "rtclab.workers",
    "SignalingClient": "rtclab.signaling",
    "SignalingError": "rtclab.signaling",
    "SignalingServer": "rtclab.signaling",
    "StatsCollector": "rtclab.stats",
    "read_events_csv": "rtclab.stats",
    "read_frames_csv": "rtclab.stats",
    "read_samples_csv": "rtclab.stats",
}

__all__ = [
    "BandwidthEstimator",
    "ChatMessage",
    "Coturn",
    "DelayBasedEstimator",
    "IceConfig",
    "IceServer",
    "Lab",
    "Link",
    "LossBasedAimd",
    "Network",
    "Peer",
    "RemoteConnection",
    "RemotePeer",
    "SignalingClient",
    "SignalingError",
    "SignalingServer",
    "StatsCollector",
    "__version__",
    "bwe_test",
    "compare_ice_paths",
    "doctor",
    "load_test",
    "read_events_csv",
    "read_frames_csv",
    "read_samples_csv",
]

if TYPE_CHECKING:
    from .cc import BandwidthEstimator, DelayBasedEstimator, LossBasedAimd
    from .experiments import bwe_test, compare_ice_paths, load_test
    from .ice.config import IceConfig, IceServer
    from .ice.coturn import Coturn
    from .ice.turn_doctor import doctor
    from .lab import Lab
    from .net import Link, Network
    from .peer import ChatMessage, Peer, RemoteConnection
    from .signaling import SignalingClient, SignalingError, SignalingServer
    from .stats import StatsCollector, read_events_csv, read_frames_csv, read_samples_csv
    from .workers import RemotePeer


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


def _register_jupyter_display() -> None:
    """Inside IPython, show a :class:`Peer` as its live widget.

    Registered by name from the facade, so neither the core peer module nor this import
    loads ipywidgets: the widget module is imported when a peer is first displayed.
    """
    if "IPython" not in sys.modules:
        return
    shell = sys.modules["IPython"].get_ipython()
    if shell is None:
        return

    def show(peer: Any, include: Any = None, exclude: Any = None) -> Any:
        from .widgets.peer_widget import peer_mimebundle

        return peer_mimebundle(peer, include=include, exclude=exclude)

    def show_remote(peer: Any, include: Any = None, exclude: Any = None) -> Any:
        from .widgets.remote_peer_widget import remote_peer_mimebundle

        return remote_peer_mimebundle(peer, include=include, exclude=exclude)

    formatter = shell.display_formatter.mimebundle_formatter
    formatter.for_type_by_name("rtclab.peer.peer", "Peer", show)
    formatter.for_type_by_name("rtclab.workers.remote", "RemotePeer", show_remote)


_register_jupyter_display()
