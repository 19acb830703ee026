"""Counters a peer keeps per remote connection: what aiortc's getStats does not report."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ChannelCounters:
    """One data channel's traffic, as W3C ``RTCDataChannelStats`` plus what back-pressure refused.

    ``messages_dropped`` counts sends refused because ``bufferedAmount`` was over the
    threshold (unreliable channels drop; they never queue without bound).
    """

    label: str
    messages_sent: int = 0
    bytes_sent: int = 0
    messages_received: int = 0
    bytes_received: int = 0
    messages_dropped: int = 0
    backpressure_waits: int = 0


@dataclass
class ConnectionCounters:
    """Per-remote counters; keys of the dicts are ``"audio"`` / ``"video"``.

    ``rtp_bytes_received`` / ``rtp_packets_received`` are counted as RTP packets arrive
    (aiortc's inbound-rtp has no ``bytesReceived``), so inbound bitrate is measured, not guessed.
    """

    frames_sent: dict[str, int] = field(default_factory=dict)
    frames_received: dict[str, int] = field(default_factory=dict)
    rtp_bytes_received: dict[str, int] = field(default_factory=dict)
    rtp_packets_received: dict[str, int] = field(default_factory=dict)
    channels: dict[str, ChannelCounters] = field(default_factory=dict)

    def channel(self, label: str) -> ChannelCounters:
        """The counters for ``label``, created on first use."""
        counters = self.channels.get(label)
        if counters is None:
            counters = self.channels[label] = ChannelCounters(label)
        return counters
