"""Value types shared across layers: plain data, no I/O, no rtclab imports.

The bottom of the dependency graph (see docs/ARCHITECTURE.md): signaling, ice, peer,
stats and widgets all speak these types, so none has to import another for them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

__all__ = [
    "PATH_COLUMNS",
    "CandidateInfo",
    "CandidatePair",
    "ChannelCounters",
    "ConnectionCounters",
    "EventListener",
    "RtpStreamCounters",
]

#: ``listener(peer, remote, event, value)``: how peers, the signaling server and the lab
#: report events (a peer name, the remote or ``None``, the event name, its value).
EventListener = Callable[[str, "str | None", str, Any], None]

#: The path a connection takes, as columns of the samples and selected-pairs frames.
PATH_COLUMNS: list[str] = [
    "local_candidate_type",
    "remote_candidate_type",
    "protocol",
    "relay_protocol",
    "local_address",
    "remote_address",
]


@dataclass(frozen=True)
class CandidateInfo:
    """One ICE candidate as plain data (an aioice ``Candidate`` is mutable and has no ``==``)."""

    foundation: str
    component: int
    protocol: str
    priority: int
    address: str
    port: int
    type: str
    related_address: str | None = None
    related_port: int | None = None
    url: str | None = None
    """The STUN/TURN URL that produced a local srflx/relay candidate (rtclab's gathering)."""

    @property
    def address_port(self) -> str:
        """``"ip:port"`` (IPv6 in brackets), the form used in the samples frame."""
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class CandidatePair:
    """The pair ICE selected: which path the media and data actually take.

    ``protocol`` is the transport between the two candidates (what the remote sees);
    ``relay_protocol`` is how *we* reach our TURN server (``udp``/``tcp``/``tls``) when the
    local candidate is a relay, else ``None`` — the two differ for TURN over TCP/TLS.
    """

    local: CandidateInfo
    remote: CandidateInfo
    protocol: str
    relay_protocol: str | None = None

    def columns(self) -> dict[str, str | None]:
        """The pair as the path columns of a samples row (:data:`PATH_COLUMNS`)."""
        return {
            "local_candidate_type": self.local.type,
            "remote_candidate_type": self.remote.type,
            "protocol": self.protocol,
            "relay_protocol": self.relay_protocol,
            "local_address": self.local.address_port,
            "remote_address": self.remote.address_port,
        }

    def describe(self) -> str:
        """One line for events and logs: ``host/srflx udp 10.0.0.1:5000 -> 1.2.3.4:6000``."""
        relay = f" (relay over {self.relay_protocol})" if self.relay_protocol else ""
        return (
            f"{self.local.type}/{self.remote.type} {self.protocol}{relay} "
            f"{self.local.address_port} -> {self.remote.address_port}"
        )


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
class RtpStreamCounters:
    """What aiortc does to one RTP stream (per kind and direction) without counting it.

    W3C webrtc-stats meanings: on the sending side ``nack_count`` / ``pli_count`` /
    ``fir_count`` count feedback *received*, on the receiving side feedback *sent*.
    ``keyframes`` are encoded (sending) or arrived (receiving: the first packet of a
    keyframe, once per frame). ``remb_bps`` is the last REMB: received (sending) or sent
    (receiving). ``loss_bursts`` / ``burst_packets_lost`` count sequence-number gaps and
    the packets in them (receiving audio), for the E-model's burst ratio.
    """

    nack_count: int = 0
    pli_count: int = 0
    fir_count: int = 0
    keyframes: int = 0
    retransmitted_packets_sent: int = 0
    remb_bps: int | None = None
    loss_bursts: int = 0
    burst_packets_lost: int = 0


@dataclass
class ConnectionCounters:
    """Per-remote counters; keys of the dicts are ``"audio"`` / ``"video"``.

    ``rtp_bytes_received`` / ``rtp_packets_received`` are counted as RTP packets arrive
    (aiortc's inbound-rtp has no ``bytesReceived``), so inbound bitrate is measured, not guessed.
    ``outbound_rtp`` / ``inbound_rtp`` hold the feedback and keyframe counts aiortc keeps
    none of (:class:`RtpStreamCounters`).
    ``freeze_count``, ``total_freezes_duration_ms`` (W3C inbound-rtp ``freezeCount``,
    ``totalFreezesDuration``) and ``frames_untagged`` (decoded frames without a readable
    frame tag) are the received video's, counted by the peer's frame tracker.
    """

    frames_sent: dict[str, int] = field(default_factory=dict)
    frames_received: dict[str, int] = field(default_factory=dict)
    rtp_bytes_received: dict[str, int] = field(default_factory=dict)
    rtp_packets_received: dict[str, int] = field(default_factory=dict)
    channels: dict[str, ChannelCounters] = field(default_factory=dict)
    outbound_rtp: dict[str, RtpStreamCounters] = field(default_factory=dict)
    inbound_rtp: dict[str, RtpStreamCounters] = field(default_factory=dict)
    freeze_count: int = 0
    total_freezes_duration_ms: float = 0.0
    frames_untagged: int = 0
    frames_tracked: bool = False  # the receiver reads frame tags (the three above mean something)

    def snapshot(self) -> ConnectionCounters:
        """A copy as of now, what the next stats sample diffs against: every dict and
        counter object copied (values are numbers), ~5x cheaper than ``copy.deepcopy``,
        which a poll of 64 connections paid every second."""
        values: dict[str, Any] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, dict):
                value = {key: copy.copy(counter) for key, counter in value.items()}
            values[item.name] = value
        return ConnectionCounters(**values)

    def rtp_stream(self, direction: str, kind: str) -> RtpStreamCounters:
        """The ``direction`` (``"outbound"``/``"inbound"``) counters of ``kind``, created on
        first use."""
        streams = self.outbound_rtp if direction == "outbound" else self.inbound_rtp
        counters = streams.get(kind)
        if counters is None:
            counters = streams[kind] = RtpStreamCounters()
        return counters

    def channel(self, label: str) -> ChannelCounters:
        """The counters for ``label``, created on first use."""
        counters = self.channels.get(label)
        if counters is None:
            counters = self.channels[label] = ChannelCounters(label)
        return counters
