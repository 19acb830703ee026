"""The one thing a peer needs from a network backend: where to gather and how to attach.

A peer holds a :class:`NetworkAttachment` (an emulated :class:`~rtclab.net.Host`, or
nothing for the machine's own interfaces) and never learns which backend it is on.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol, runtime_checkable

__all__ = ["NetworkAttachment"]


@runtime_checkable
class NetworkAttachment(Protocol):
    """A host a peer is bound to: ICE gathers on ``interfaces``, and sockets opened inside
    ``attach()`` (entered around ``setLocalDescription``/``setRemoteDescription``) belong to
    that host."""

    @property
    def interfaces(self) -> tuple[str, ...]: ...

    def attach(self) -> AbstractContextManager[None]: ...
