"""Peers in worker processes — on this machine's cores or a Dask cluster's workers.

``Lab(workers=N)`` starts a :class:`WorkerPool`; ``lab.peer(...)`` then returns a
:class:`RemotePeer`, the kernel's handle on a peer in a worker (see README, "When to use
workers and a cluster").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

_EXPORTS = {
    "RemotePeer": "rtclab.workers.remote",
    "WorkerPool": "rtclab.workers.pool",
    "run_worker": "rtclab.workers.worker",
}

__all__ = ["RemotePeer", "WorkerPool", "run_worker"]

if TYPE_CHECKING:
    from .pool import WorkerPool
    from .remote import RemotePeer
    from .worker import run_worker


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
