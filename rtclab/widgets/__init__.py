"""Jupyter widgets: PeerWidget (one peer, live) and Dashboard (live plotly stats).

Imported lazily (PEP 562): showing a Peer loads ipywidgets only, not plotly.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Dashboard": "rtclab.widgets.dashboard",
    "PeerWidget": "rtclab.widgets.peer_widget",
}

__all__ = ["Dashboard", "PeerWidget"]

if TYPE_CHECKING:
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
