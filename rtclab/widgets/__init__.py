"""Jupyter widgets: PeerWidget (one peer, live), Dashboard (live plotly stats) and
BrowserPeer (the notebook's tab as a peer, anywidget).

Imported lazily (PEP 562): showing a Peer loads ipywidgets only, not plotly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

_EXPORTS = {
    "BrowserPeer": "rtclab.widgets.browser_peer",
    "Dashboard": "rtclab.widgets.dashboard",
    "PeerWidget": "rtclab.widgets.peer_widget",
}

__all__ = ["BrowserPeer", "Dashboard", "PeerWidget"]

if TYPE_CHECKING:
    from .browser_peer import BrowserPeer
    from .dashboard import Dashboard
    from .peer_widget import PeerWidget


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
