"""rtclab: a WebRTC lab you can see and experiment with inside Jupyter."""

from __future__ import annotations

__version__ = "0.1.0"
