"""Reading one RTCPeerConnection for a stats sample: getStats plus what it hides.

aiortc's ``getStats`` lacks the selected candidate pair, the SCTP RTT, transport totals,
clock rates and per-SSRC receive counts; they are read here, through
:mod:`rtclab._compat` only, into a :class:`~rtclab.stats.convert.ConnectionSnapshot`
that the pure converter turns into rows. Defensive: a read never raises from a poll.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from .._compat.aiortc import (
    dtls_transport_stats,
    encoder_target_bitrate,
    receiver_jitter_buffer_prefetch,
    receiver_rtx_ssrcs,
    receiver_streams,
    sctp_rtt_ms,
    transceiver_codecs,
)
from ..ice.inspect import dtls_transports, selected_candidate_pair
from ..model import ConnectionCounters
from .convert import ConnectionSnapshot

__all__ = ["read_snapshot"]

_TRANSPORT_FIELDS = ("bytesSent", "bytesReceived", "packetsSent", "packetsReceived")


async def read_snapshot(
    peer: str,
    remote: str,
    pc: Any,
    counters: ConnectionCounters,
    now: datetime,
    link: Mapping[str, Any] | None = None,
) -> ConnectionSnapshot:
    """One connection's numbers at ``now``: its report and counters read together."""
    state = str(getattr(pc, "connectionState", "unknown"))
    report: Mapping[str, Any] = {}
    if state != "closed":
        report = _inbound_rtp_per_ssrc(pc, dict(await pc.getStats()))
    # read everything else right after getStats so counters and report are simultaneous
    monotonic = time.monotonic()
    return ConnectionSnapshot(
        peer=peer,
        remote=remote,
        t=now,
        monotonic=monotonic,
        report=report,
        transport=_transport_totals(pc),
        candidate_pair=selected_candidate_pair(pc),
        counters=counters.snapshot(),
        connection_state=state,
        sctp_rtt_ms=sctp_rtt_ms(pc),
        clock_rates=_clock_rates(pc),
        encoder_targets_bps=_encoder_targets(pc),
        playout_delay_ms=_playout_delays(pc),
        link=link,
    )


def _transport_totals(pc: Any) -> dict[str, Any] | None:
    """DTLS transport counters summed over the pc's transports (one with bundle)."""
    totals: dict[str, Any] | None = None
    for dtls in dtls_transports(pc):
        report = dtls_transport_stats(dtls)
        if report is None:
            continue
        for stats in report.values():
            if getattr(stats, "type", None) != "transport":
                continue
            if totals is None:
                totals = dict.fromkeys(_TRANSPORT_FIELDS, 0)
            for name in list(totals):
                totals[name] += int(getattr(stats, name, 0) or 0)
    return totals


def _inbound_rtp_per_ssrc(pc: Any, report: dict[str, Any]) -> dict[str, Any]:
    """One inbound-rtp entry per received media SSRC, retransmission (RTX) streams left out.

    aiortc gives every SSRC a receiver sees the same stats id, so once the sender
    retransmits (NACK -> RTX, e.g. on a jittery link) the RTX stream's few packets replace
    the media stream's counters and jitter in the report. Rebuilt here from the receiver's
    own (private) per-SSRC statistics; left as reported if those are not there.
    """
    try:
        transceivers = list(pc.getTransceivers())
    except Exception:
        return report
    for transceiver in transceivers:
        receiver = transceiver.receiver
        streams = receiver_streams(receiver)
        rtx = receiver_rtx_ssrcs(receiver)
        shared_id = f"inbound-rtp_{id(receiver)}"
        entry = report.get(shared_id)
        if not isinstance(streams, dict) or not isinstance(rtx, dict) or entry is None:
            continue
        del report[shared_id]
        for ssrc, stream in list(streams.items()):
            if ssrc in rtx:
                continue
            report[f"{shared_id}_{ssrc}"] = dataclasses.replace(
                entry,
                id=f"{shared_id}_{ssrc}",
                ssrc=ssrc,
                packetsReceived=stream.packets_received,
                packetsLost=stream.packets_lost,
                jitter=stream.jitter,
            )
    return report


def _transceivers(pc: Any) -> list[Any]:
    try:
        return list(pc.getTransceivers())
    except Exception:
        return []


def _encoder_targets(pc: Any) -> dict[str, int]:
    """Each sending encoder's target bitrate (REMB's, clamped, capped), per kind."""
    targets: dict[str, int] = {}
    for transceiver in _transceivers(pc):
        target = encoder_target_bitrate(transceiver.sender)
        kind = getattr(transceiver, "kind", None)
        if target is not None and isinstance(kind, str):
            targets.setdefault(kind, target)
    return targets


#: aiortc's Opus frames: its audio jitter buffer holds ``prefetch`` of them.
_AUDIO_FRAME_MS = 20.0


def _playout_delays(pc: Any) -> dict[str, float]:
    """The audio jitter buffer's fixed delay (frames it holds back x 20 ms), for the MOS."""
    delays: dict[str, float] = {}
    for transceiver in _transceivers(pc):
        if getattr(transceiver, "kind", None) != "audio":
            continue
        prefetch = receiver_jitter_buffer_prefetch(transceiver.receiver)
        if prefetch is not None:
            delays.setdefault("audio", prefetch * _AUDIO_FRAME_MS)
    return delays


def _clock_rates(pc: Any) -> dict[str, int]:
    """Negotiated RTP clock per kind (the transceiver's codecs, first = primary codec)."""
    rates: dict[str, int] = {}
    for transceiver in _transceivers(pc):
        codecs = transceiver_codecs(transceiver)
        kind = getattr(transceiver, "kind", None)
        rate = getattr(codecs[0], "clockRate", None) if codecs else None
        if isinstance(kind, str) and isinstance(rate, int) and kind not in rates:
            rates[kind] = rate
    return rates
