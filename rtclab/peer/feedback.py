"""Counting what aiortc does to a stream without reporting it: RTCP feedback (NACK, PLI,
FIR, REMB), retransmissions, keyframes and loss bursts, into ``RtpStreamCounters``.

The hooks come from :mod:`rtclab._compat.aiortc`; what a packet *means* is decided here by
pure functions (:func:`rtcp_feedback`, :func:`is_keyframe`) that tests feed with bytes.
"""

from __future__ import annotations

from typing import Any

from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
    unpack_remb_fci,
)

from .._compat.aiortc import (
    on_encoded_frame,
    on_retransmit,
    on_rtcp_received,
    on_rtcp_sent,
    receiver_rtx_ssrcs,
    transceiver_codecs,
)
from ..model import RtpStreamCounters

__all__ = [
    "InboundPacketCounter",
    "count_feedback_received",
    "count_feedback_sent",
    "is_keyframe",
    "rtcp_feedback",
]


def rtcp_feedback(packet: Any) -> tuple[str, int | None] | None:
    """``("nack" | "pli" | "fir", None)`` or ``("remb", bps)`` for a feedback packet, else
    None. (aiortc routes a REMB only to the senders whose SSRC it names.)"""
    if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
        return ("nack", None)
    if isinstance(packet, RtcpPsfbPacket):
        if packet.fmt == RTCP_PSFB_PLI:
            return ("pli", None)
        if packet.fmt == RTCP_PSFB_FIR:
            return ("fir", None)
        if packet.fmt == RTCP_PSFB_APP:
            try:
                bitrate, _ssrcs = unpack_remb_fci(packet.fci)
            except ValueError:
                return None
            return ("remb", int(bitrate))
    return None


def _apply(counters: RtpStreamCounters, feedback: tuple[str, int | None] | None) -> None:
    if feedback is None:
        return
    what, value = feedback
    if what == "remb":
        counters.remb_bps = value
    else:
        name = f"{what}_count"
        setattr(counters, name, getattr(counters, name) + 1)


def _vp8_keyframe(payload: bytes) -> bool | None:
    """RFC 7741: the payload descriptor, then the VP8 frame tag whose P bit is 0 on a
    keyframe; None unless this packet starts a frame (S=1, partition 0)."""
    if not payload:
        return None
    first = payload[0]
    if not first & 0x10 or first & 0x0F:  # S bit, PID
        return None
    pos = 1
    if first & 0x80:  # X: extension byte
        if len(payload) < 2:
            return None
        ext = payload[1]
        pos = 2
        if ext & 0x80:  # I: picture id, 7 or 15 bits (M)
            pos += 2 if len(payload) > pos and payload[pos] & 0x80 else 1
        if ext & 0x40:  # L: TL0PICIDX
            pos += 1
        if ext & 0x30:  # T or K: TID/Y/KEYIDX
            pos += 1
    if len(payload) <= pos:
        return None
    return not payload[pos] & 0x01


def _h264_keyframe(payload: bytes) -> bool | None:
    """RFC 6184: an IDR slice or SPS, alone, in a STAP-A, or starting an FU-A."""
    if not payload:
        return None
    nal = payload[0] & 0x1F
    if nal in (5, 7):
        return True
    if nal == 24:  # STAP-A: 16-bit sizes, then NAL units
        pos = 1
        while pos + 2 < len(payload):
            size = int.from_bytes(payload[pos : pos + 2], "big")
            if payload[pos + 2] & 0x1F in (5, 7):
                return True
            pos += 2 + size
        return False
    if nal == 28 and len(payload) > 1:  # FU-A
        if not payload[1] & 0x80:
            return None
        return payload[1] & 0x1F == 5
    return False


def is_keyframe(mime_type: str, payload: bytes) -> bool | None:
    """Whether an RTP payload starts a keyframe: True/False for the first packet of a VP8
    or H.264 frame, None for a continuation packet or another codec."""
    codec = mime_type.lower().split("/")[-1]
    if codec == "vp8":
        return _vp8_keyframe(payload)
    if codec == "h264":
        return _h264_keyframe(payload)
    return None


def count_feedback_received(sender: Any, counters: RtpStreamCounters) -> None:
    """Count, on the sending side, the feedback an ``RTCRtpSender`` receives, the packets it
    retransmits and the keyframes it encodes. Idempotent (a hooked sender is left alone)."""
    on_rtcp_received(sender, lambda p: _apply(counters, rtcp_feedback(p)))

    def retransmitted() -> None:
        counters.retransmitted_packets_sent += 1

    on_retransmit(sender, retransmitted)

    def encoded(mime_type: str, payloads: list[bytes]) -> None:
        if any(is_keyframe(mime_type, payload) for payload in payloads[:1]):
            counters.keyframes += 1

    on_encoded_frame(sender, encoded)


def count_feedback_sent(receiver: Any, counters: RtpStreamCounters) -> None:
    """Count, on the receiving side, the NACK/PLI/FIR an ``RTCRtpReceiver`` sends and the
    REMB estimate it last sent. Idempotent."""
    on_rtcp_sent(receiver, lambda p: _apply(counters, rtcp_feedback(p)))


class InboundPacketCounter:
    """Per arriving RTP packet: keyframes on video (once per RTP timestamp, retransmissions
    unwrapped), sequence-number gaps (loss bursts) on audio. Cheap: a dict lookup and a few
    integer operations per packet; a keyframe check only on video."""

    def __init__(
        self, receiver: Any, transceiver: Any, counters: RtpStreamCounters, kind: str
    ) -> None:
        self._receiver = receiver
        self._transceiver = transceiver
        self._counters = counters
        self._video = kind == "video"
        self._last_seq: dict[int, int] = {}
        self._mime: dict[int, tuple[str, int | None]] = {}
        self._last_keyframe: int | None = None

    def __call__(self, packet: Any) -> None:
        if self._video:
            self._keyframe(packet)
        else:
            self._gap(packet)

    def _gap(self, packet: Any) -> None:
        seq = int(packet.sequence_number)
        last = self._last_seq.get(packet.ssrc)
        if last is None:
            self._last_seq[packet.ssrc] = seq
            return
        ahead = (seq - last) & 0xFFFF
        if 0 < ahead < 0x8000:  # newer: a gap before it is a burst of losses
            if ahead > 1:
                self._counters.loss_bursts += 1
                self._counters.burst_packets_lost += ahead - 1
            self._last_seq[packet.ssrc] = seq

    def _codec(self, payload_type: int) -> tuple[str, int | None]:
        """(mime type, apt) of a payload type, from the negotiated codecs (cached once
        known; ``("", None)`` for a payload type not negotiated)."""
        found = self._mime.get(payload_type)
        if found is None:
            for codec in transceiver_codecs(self._transceiver):
                if getattr(codec, "payloadType", None) == payload_type:
                    apt = (getattr(codec, "parameters", None) or {}).get("apt")
                    found = (str(codec.mimeType), apt if isinstance(apt, int) else None)
                    self._mime[payload_type] = found
                    return found
            return ("", None)
        return found

    def _keyframe(self, packet: Any) -> None:
        mime, apt = self._codec(int(packet.payload_type))
        payload: bytes = packet.payload
        if mime.lower().endswith("/rtx") and apt is not None:
            rtx = receiver_rtx_ssrcs(self._receiver) or {}
            if packet.ssrc not in rtx:
                return
            mime, payload = self._codec(apt)[0], payload[2:]  # drop the original sequence
        if is_keyframe(mime, payload) and packet.timestamp != self._last_keyframe:
            self._last_keyframe = packet.timestamp
            self._counters.keyframes += 1
