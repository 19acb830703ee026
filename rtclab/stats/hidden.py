"""Pure: the columns for what aiortc does without reporting it, and the audio MOS estimate.

Counts are cumulative, as W3C's ``nackCount``/``pliCount``/``firCount``: on outbound rows
the feedback this sender *received*, on inbound rows the feedback this receiver *sent*
(``rtclab.model.RtpStreamCounters``). Bitrates are kbps. ``mos`` is an E-model estimate
(:mod:`.emodel`) on inbound audio rows.
"""

from __future__ import annotations

from typing import Any

from rtclab.model import RtpStreamCounters

from .emodel import burst_ratio
from .emodel import mos as emodel_mos

__all__ = [
    "audio_mos",
    "browser_audio_mos",
    "inbound_feedback_columns",
    "outbound_feedback_columns",
]


def _kbps(bps: float | None) -> float | None:
    return None if bps is None else bps / 1000.0


def _counts(stream: RtpStreamCounters | None) -> dict[str, Any]:
    if stream is None:
        return {}
    return {
        "nack_count": stream.nack_count,
        "pli_count": stream.pli_count,
        "fir_count": stream.fir_count,
    }


def outbound_feedback_columns(
    kind: str, stream: RtpStreamCounters | None, target_bps: int | None
) -> dict[str, Any]:
    """NACK/PLI/FIR received, retransmissions, keyframes encoded, the encoder's target and
    the last REMB received (``available_outgoing_bitrate_kbps``) of one outbound stream."""
    row = _counts(stream)
    if stream is not None:
        row["retransmitted_packets_sent"] = stream.retransmitted_packets_sent
        if kind == "video":
            row["keyframes_encoded"] = stream.keyframes
            row["available_outgoing_bitrate_kbps"] = _kbps(stream.remb_bps)
    if kind == "video":
        row["target_bitrate_kbps"] = _kbps(target_bps)
    return row


def inbound_feedback_columns(kind: str, stream: RtpStreamCounters | None) -> dict[str, Any]:
    """NACK/PLI/FIR sent, keyframes arrived and the last REMB sent (``estimate_kbps``)."""
    row = _counts(stream)
    if stream is not None and kind == "video":
        row["keyframes_decoded"] = stream.keyframes
        row["estimate_kbps"] = _kbps(stream.remb_bps)
    return row


def audio_mos(
    *,
    rtt_ms: float | None,
    playout_delay_ms: float | None,
    loss_fraction: float | None,
    current: RtpStreamCounters | None,
    previous: RtpStreamCounters | None,
    received: float | None,
    prev_received: float | None,
) -> float | None:
    """The E-model MOS of an inbound audio stream over one interval, or None without an RTT
    (a receive-only peer measures none) or a loss figure.

    One-way delay = RTT / 2 + the jitter buffer's fixed delay; loss = the interval's
    fraction lost; burstiness from the gaps counted in the interval (all so far when there
    is no previous sample).
    """
    if rtt_ms is None or loss_fraction is None:
        return None
    delay = rtt_ms / 2.0 + (playout_delay_ms or 0.0)
    burst_r = 1.0
    if current is not None and received is not None:
        if previous is None or prev_received is None:
            previous, prev_received = RtpStreamCounters(), 0.0
        burst_r = burst_ratio(
            current.loss_bursts - previous.loss_bursts,
            current.burst_packets_lost - previous.burst_packets_lost,
            received - prev_received,
        )
    return emodel_mos(delay, loss_fraction * 100.0, burst_r)


def browser_audio_mos(rows: list[dict[str, Any]], jitter_buffer_ms: dict[int, float]) -> None:
    """Fill ``mos`` on a browser's inbound audio rows (one report, every remote), in place:
    the same estimate as :func:`audio_mos`, with the RTT the browser measured to that remote
    (RTCP on an outbound media row, else STUN on the transport row), its mean jitter-buffer
    delay (``jitter_buffer_ms``: row index -> ms) and the interval's loss. Chromium reports
    no loss pattern, so losses are scored as random (BurstR 1)."""
    rtts: dict[Any, float] = {}
    for row in rows:
        for column in ("rtcp_rtt_ms", "ice_rtt_ms"):
            value = row.get(column)
            if isinstance(value, float) and (column == "rtcp_rtt_ms" or row["remote"] not in rtts):
                rtts[row["remote"]] = value
    for index, row in enumerate(rows):
        if (row["kind"], row["direction"]) != ("audio", "inbound"):
            continue
        rtt, loss = rtts.get(row["remote"]), row.get("fraction_lost")
        row["mos"] = None  # ours, never a client's claim
        if rtt is not None and isinstance(loss, float):
            row["mos"] = emodel_mos(rtt / 2.0 + jitter_buffer_ms.get(index, 0.0), loss * 100.0)
