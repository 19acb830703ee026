"""Jupyter widgets: PeerWidget (one peer, live), Dashboard (live plotly stats) and
BrowserPeer (the notebook's tab as a peer, anywidget).

Imported lazily (PEP 562): showing a Peer loads ipywidgets only, not plotly.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rtclab.widgets' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
