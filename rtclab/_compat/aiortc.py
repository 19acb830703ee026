"""Every read of aiortc's private state, and the two places rtclab changes aiortc's behaviour.

aiortc's getStats leaves out what a lab needs (inbound bytes, candidate pairs, SCTP RTT,
per-SSRC counters) and offers no bitrate cap below its REMB clamp, so rtclab reaches into
its objects. Each access is one function here, read defensively: an aiortc that no longer
has the attribute gives ``None``/``[]``/``False``, never an exception in the middle of a poll,
and :func:`rtclab._compat.probe` names what is missing. Verified against aiortc 1.16.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

from aiortc.rtp import RTCP_PSFB_APP, RTP_HISTORY_SIZE, RtcpPsfbPacket, pack_remb_fci

__all__ = [
    "cap_encoder_bitrate",
    "dtls_bytes_received",
    "dtls_transport_stats",
    "encoder_target_bitrate",
    "ice_transport_connection",
    "on_encoded_frame",
    "on_retransmit",
    "on_rtcp_received",
    "on_rtcp_sent",
    "on_rtp_packet",
    "receiver_jitter_buffer_prefetch",
    "receiver_rtx_ssrcs",
    "receiver_streams",
    "replace_remote_bitrate_estimator",
    "sctp_rtt_ms",
    "sender_encoder",
    "transceiver_codecs",
]


def sender_encoder(sender: Any) -> Any | None:
    """The codec encoder of an ``RTCRtpSender`` (``__encoder``), or ``None`` before its first
    frame: aiortc creates it lazily and keeps it private, and the bitrate cap needs it."""
    return getattr(sender, "_RTCRtpSender__encoder", None)


def _target_attr(encoder: Any) -> str | None:
    """The name-mangled attribute where an aiortc encoder keeps its target bitrate."""
    for klass in type(encoder).__mro__:
        name = f"_{klass.__name__}__target_bitrate"
        if name in vars(encoder):
            return name
    return None


def cap_encoder_bitrate(sender: Any, cap_bps: int | None) -> bool:
    """Cap the target bitrate of ``sender``'s encoder (``None`` lifts the cap); False until
    the encoder exists.

    aiortc sets the target from the receiver's REMB and clamps it to 250 kbps-1.5 Mbps;
    a lab wants to go lower. The capped value is written into the encoder's own stored
    target (``__target_bitrate``), because aiortc's VP8 encoder sizes its rate-control
    buffer from that attribute (``bufsize``, meant to be 1 s) and not from the
    ``target_bitrate`` property: capping only the property left a buffer of 3-10 s at low
    caps. The encoder's ``__class__`` is swapped for a subclass whose setter remembers what
    REMB asked for, so lifting the cap restores it (aiortc re-creates the codec when the
    target moves by more than 10 %).
    """
    encoder = sender_encoder(sender)
    if encoder is None or not hasattr(type(encoder), "target_bitrate"):
        return False
    attr = _target_attr(encoder)
    if attr is None:
        return False
    cls = type(encoder)
    if not getattr(cls, "_rtclab_capped", False):
        base = cls.target_bitrate

        def set_(self: Any, value: int) -> None:
            base.fset(self, value)  # aiortc's own clamp
            self._rtclab_requested = getattr(self, attr)
            _apply_cap(self, attr)

        cls = type(
            f"Capped{cls.__name__}",
            (cls,),
            {"_rtclab_capped": True, "target_bitrate": property(base.fget, set_)},
        )
        encoder._rtclab_requested = getattr(encoder, attr)
        encoder.__class__ = cls
    encoder._rtclab_cap = cap_bps
    _apply_cap(encoder, attr)
    return True


def _apply_cap(encoder: Any, attr: str) -> None:
    requested, cap = encoder._rtclab_requested, encoder._rtclab_cap
    setattr(encoder, attr, requested if cap is None else min(requested, cap))


def on_rtp_packet(receiver: Any, callback: Callable[[Any], None]) -> bool:
    """Call ``callback(packet)`` for every RTP packet an ``RTCRtpReceiver`` is handed, before
    aiortc handles it; False if already hooked or aiortc has no ``_handle_rtp_packet``.

    aiortc's inbound-rtp has no ``bytesReceived``: counting as packets arrive is the only
    way. ``RTCDtlsTransport`` calls the method on the receiver instance, so an instance
    attribute wraps it for this receiver alone.
    """
    return _wrap_method(receiver, "_handle_rtp_packet", _calling_first(callback))


def _wrap_method(obj: Any, name: str, make: Callable[[Any], Any]) -> bool:
    """Replace ``obj.<name>`` on this instance alone with ``make(original)``; False if
    already wrapped by rtclab or aiortc has no such method. aiortc calls these methods
    through ``self``, so an instance attribute intercepts them for this object only."""
    original = getattr(obj, name, None)
    if original is None or getattr(original, "_rtclab_hooked", False):
        return False
    wrapped = make(original)
    wrapped._rtclab_hooked = True
    setattr(obj, name, wrapped)
    return True


def _calling_first(callback: Callable[[Any], None]) -> Callable[[Any], Any]:
    """A wrapper maker for an async method whose first argument is a packet: the callback
    sees the packet, then aiortc handles it."""

    def make(original: Any) -> Any:
        # a plain function returning aiortc's own coroutine: no coroutine of ours per
        # packet (aiortc awaits the call at once, so the callback still comes first)
        def hooked(packet: Any, *args: Any, **kwargs: Any) -> Any:
            callback(packet)
            return original(packet, *args, **kwargs)

        return hooked

    return make


def on_rtcp_sent(receiver: Any, callback: Callable[[Any], None]) -> bool:
    """Call ``callback(packet)`` for every RTCP packet an ``RTCRtpReceiver`` sends (receiver
    reports, NACK, PLI, REMB), before it goes out; False if already hooked.

    aiortc's receiver decides on NACK, PLI and REMB itself and counts none of them; every
    one goes through its ``_send_rtcp``.
    """
    return _wrap_method(receiver, "_send_rtcp", _calling_first(callback))


def on_rtcp_received(sender: Any, callback: Callable[[Any], None]) -> bool:
    """Call ``callback(packet)`` for every RTCP packet handed to an ``RTCRtpSender`` (reports,
    NACK, PLI, FIR, REMB), before aiortc acts on it; False if already hooked."""
    return _wrap_method(sender, "_handle_rtcp_packet", _calling_first(callback))


def on_retransmit(sender: Any, callback: Callable[[], None]) -> bool:
    """Call ``callback()`` for every packet an ``RTCRtpSender`` retransmits on a NACK (one it
    still holds in its history; aiortc silently skips the others); False if already hooked."""

    def make(original: Any) -> Any:
        async def hooked(sequence_number: int) -> None:
            history = getattr(sender, "_RTCRtpSender__rtp_history", None)
            packet = history.get(sequence_number % RTP_HISTORY_SIZE) if history else None
            if packet is not None and packet.sequence_number == sequence_number:
                callback()
            await original(sequence_number)

        return hooked

    return _wrap_method(sender, "_retransmit", make)


def on_encoded_frame(sender: Any, callback: Callable[[str, list[bytes]], None]) -> bool:
    """Call ``callback(mime_type, payloads)`` for every frame an ``RTCRtpSender`` encoded,
    before it is sent; False if already hooked. Keyframes are only visible here: aiortc
    forces some (PLI, FIR) and its VP8 encoder makes others (a new codec whenever the
    target bitrate moves by more than 10 %)."""

    def make(original: Any) -> Any:
        async def hooked(codec: Any) -> Any:
            frame = await original(codec)
            if frame is not None:
                callback(str(getattr(codec, "mimeType", "")), list(frame.payloads))
            return frame

        return hooked

    return _wrap_method(sender, "_next_encoded_frame", make)


def encoder_target_bitrate(sender: Any) -> int | None:
    """The bitrate (bps) ``sender``'s encoder aims at now: REMB's, clamped by aiortc, capped
    by :func:`cap_encoder_bitrate`; None before the first frame or for a codec without one."""
    value = getattr(sender_encoder(sender), "target_bitrate", None)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def receiver_jitter_buffer_prefetch(receiver: Any) -> int | None:
    """How many frames an ``RTCRtpReceiver``'s jitter buffer holds before it releases one
    (``__jitter_buffer._prefetch``: 4 for audio), or None: the fixed playout delay that
    the E-model's one-way delay must include."""
    buffer = getattr(receiver, "_RTCRtpReceiver__jitter_buffer", None)
    prefetch = getattr(buffer, "_prefetch", None)
    return prefetch if isinstance(prefetch, int) else None


#: ``feed(packet, arrival_time_ms)`` -> ``(bitrate_bps, ssrcs)`` to send as REMB, or None:
#: the contract of aiortc's own ``RemoteBitrateEstimator.add``.
RembFeed = Callable[[Any, int], tuple[int, list[int]] | None]


def replace_remote_bitrate_estimator(receiver: Any, feed: RembFeed) -> bool:
    """Turn off a video ``RTCRtpReceiver``'s own bandwidth estimator and call ``feed`` for
    every RTP packet instead; what it returns goes out as REMB. False for an audio receiver
    (aiortc estimates on video only), if already replaced, or on an aiortc without the hooks.

    aiortc feeds ``__remote_bitrate_estimator`` from ``_handle_rtp_packet`` and sends its
    REMB there; with the attribute ``None`` it does neither, and this instance's
    ``_handle_rtp_packet`` is wrapped to feed ``feed`` the whole packet (an estimator may
    want the sequence number, which aiortc's ``add`` never sees). The REMB is the packet
    aiortc builds (PSFB APP from the receiver's RTCP SSRC), sent through ``_send_rtcp``
    like aiortc's own, so anything that watches ``_send_rtcp`` sees it. Disabled receivers
    (``_enabled`` False) feed nothing, as in aiortc.
    """
    attr = "_RTCRtpReceiver__remote_bitrate_estimator"
    original = getattr(receiver, "_handle_rtp_packet", None)
    if (
        original is None
        or getattr(original, "_rtclab_estimator", False)
        or getattr(receiver, attr, None) is None
        or not callable(getattr(receiver, "_send_rtcp", None))
    ):
        return False

    async def estimating(packet: Any, arrival_time_ms: int) -> None:
        if getattr(receiver, "_enabled", True):
            remb = feed(packet, arrival_time_ms)
            rtcp_ssrc = getattr(receiver, "_RTCRtpReceiver__rtcp_ssrc", None)
            if remb is not None and rtcp_ssrc is not None:
                await receiver._send_rtcp(
                    RtcpPsfbPacket(
                        fmt=RTCP_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0, fci=pack_remb_fci(*remb)
                    )
                )
        await original(packet, arrival_time_ms)

    estimating._rtclab_estimator = True  # type: ignore[attr-defined]
    setattr(receiver, attr, None)
    setattr(receiver, "_handle_rtp_packet", estimating)  # noqa: B010 (instance override)
    return True


def receiver_streams(receiver: Any) -> dict[int, Any] | None:
    """Per-SSRC ``StreamStatistics`` of an ``RTCRtpReceiver`` (``__remote_streams``), or None.

    aiortc's report gives every SSRC of a receiver one stats id, so RTX packets overwrite
    the media stream's counters; these are the counters before that merge.
    """
    streams = getattr(receiver, "_RTCRtpReceiver__remote_streams", None)
    return streams if isinstance(streams, dict) else None


def receiver_rtx_ssrcs(receiver: Any) -> dict[int, int] | None:
    """``{rtx ssrc: media ssrc}`` of an ``RTCRtpReceiver`` (``__rtx_ssrc``), or None: which of
    :func:`receiver_streams` are retransmissions."""
    rtx = getattr(receiver, "_RTCRtpReceiver__rtx_ssrc", None)
    return rtx if isinstance(rtx, dict) else None


def transceiver_codecs(transceiver: Any) -> list[Any]:
    """Negotiated ``RTCRtpCodecParameters`` of a transceiver (``_codecs``, first = primary);
    the RTP clock rate that converts aiortc's jitter to seconds is only found here."""
    return list(getattr(transceiver, "_codecs", None) or [])


def dtls_bytes_received(dtls: Any) -> int | None:
    """Bytes an ``RTCDtlsTransport`` has received so far (``__rx_bytes``), or None: what
    its ``transport`` stats report, without building the report (a liveness check reads
    it four times a second per connection)."""
    value = getattr(dtls, "_RTCDtlsTransport__rx_bytes", None)
    return value if isinstance(value, int) else None


def dtls_transport_stats(dtls: Any) -> Mapping[str, Any] | None:
    """The ``transport`` stats of an ``RTCDtlsTransport`` (``_get_stats()``), or None.

    aiortc merges them into ``pc.getStats()`` only through the senders and receivers, so a
    data-channel-only connection reports nothing; this reads them at the source.
    """
    get_stats = getattr(dtls, "_get_stats", None)
    if get_stats is None:
        return None
    with contextlib.suppress(Exception):  # never let a private call break a poll
        report = get_stats()
        if isinstance(report, Mapping):
            return report
    return None


def ice_transport_connection(ice_transport: Any) -> Any | None:
    """The ``aioice.Connection`` behind an ``RTCIceTransport`` (``_connection``), or None:
    candidates and the nominated pair exist only there."""
    return getattr(ice_transport, "_connection", None)


def sctp_rtt_ms(pc: Any) -> float | None:
    """aiortc's SCTP smoothed RTT in ms (``pc.sctp._srtt``, seconds), once a SACK measured it;
    the one RTT a data-channel-only connection has."""
    srtt = getattr(getattr(pc, "sctp", None), "_srtt", None)
    if isinstance(srtt, (int, float)) and not isinstance(srtt, bool):
        return float(srtt) * 1000.0
    return None
