"""Jupyter widgets: PeerWidget (one peer, live), Dashboard (live plotly stats), EstimateView
(capacity, estimate, target and send rate, live), BrowserPeer (the notebook's tab as a peer,
anywidget) and LinkControl (a host's link, live).

Imported lazily (PEP 562): showing a Peer loads ipywidgets only, not plotly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

_EXPORTS = {
    "BrowserPeer": "rtclab.widgets.browser_peer",
    "Dashboard": "rtclab.widgets.dashboard",
    "EstimateView": "rtclab.widgets.estimate_view",
    "LinkControl": "rtclab.widgets.link_control",
    "PeerWidget": "rtclab.widgets.peer_widget",
    "RemotePeerWidget": "rtclab.widgets.remote_peer_widget",
}

__all__ = [
    "BrowserPeer",
    "Dashboard",
    "EstimateView",
    "LinkControl",
    "PeerWidget",
    "RemotePeerWidget",
]

if TYPE_CHECKING:
    from .browser_peer import BrowserPeer
    from .dashboard import Dashboard
    from .estimate_view import EstimateView
    from .link_control import LinkControl
    from .peer_widget import PeerWidget
    from .remote_peer_widget import RemotePeerWidget


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
