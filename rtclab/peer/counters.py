"""Per-connection counters (what aiortc's getStats does not report); defined in
:mod:`rtclab.model`, re-exported here where the peer package has always offered them."""

from ..model import ChannelCounters, ConnectionCounters

__all__ = ["ChannelCounters", "ConnectionCounters"]
