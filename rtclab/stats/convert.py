"""Pure conversion: one connection snapshot (+ the previous one) -> sample rows.

No I/O and no asyncio here, so every unit and every trap is unit-testable with hand-built
aiortc stats objects. Units live in the column names and a number means what its name says:

- Local and remote figures never share a column. ``packets_*``, ``fraction_lost`` and
  ``jitter_ms`` are this peer's own: ``packets_sent`` on outbound rows, what arrived here on
  inbound rows. What the *remote* reported about our outbound stream (RTCP receiver
  reports, W3C remote-inbound-rtp) goes to ``remote_packets_received``,
  ``remote_packets_lost``, ``remote_fraction_lost`` and ``remote_jitter_ms`` on outbound
  rows. Those lag ``packets_sent`` by up to a report interval (~1 s): compare them with
  each other, not with ``packets_sent``.
- ``jitter_ms`` / ``remote_jitter_ms``: aiortc reports RTP ``jitter`` in RTP timestamp
  units; divided by the codec clock rate (negotiated one when known, else 48 kHz audio /
  90 kHz video).
- ``fraction_lost`` (0-1, inbound rows): over the sample interval from inbound-rtp deltas
  (lost / expected), since aiortc exposes no receive-side fraction.
  ``remote_fraction_lost`` (outbound rows): remote-inbound-rtp ``fractionLost``, the raw
  RTCP 8-bit value, divided by 256.
- One column per way of measuring a round trip, since they differ: ``rtcp_rtt_ms`` on
  outbound media rows (remote-inbound-rtp ``roundTripTime``, from RTCP sender/receiver
  reports); ``sctp_rtt_ms`` on data and transport rows (aiortc's SCTP smoothed RTT, once an
  SCTP association exists); ``ice_rtt_ms`` on transport rows reported by browsers (the
  selected pair's STUN ``currentRoundTripTime``; aioice measures none). Inbound media rows
  have none (aiortc measures no RTT there).
- ``bytes_*`` of media are RTP payload bytes, as W3C ``bytesSent``/``bytesReceived``:
  outbound from outbound-rtp ``bytesSent``; inbound from ``ConnectionCounters.rtp_bytes_received``
  (aiortc's inbound-rtp has no bytes). ``bitrate_kbps`` is kilobits per second of them.
- ``frames`` / ``frames_per_second`` are video only; audio rows carry ``audio_frames`` /
  ``audio_frames_per_second`` (Opus: 20 ms frames, 50 a second), so a column's mean never
  mixes kinds.
- QoE of received video (``rtclab.qoe``, docs/qoe.md), per interval: ``freeze_count``,
  ``total_freezes_duration_ms`` and ``frames_untagged`` here from the receiver's counters;
  ``latency_ms_p50``/``_p95``, ``frames_dropped``, ``psnr_db``, ``ssim`` filled in by the
  collector from the interval's ``frames`` rows (:func:`rtclab.qoe.interval_qoe`).
- Rates (``bitrate_kbps``, ``*frames_per_second``): deltas between this and the previous
  snapshot of the same connection; ``None`` on the first sample, when a counter went
  backwards (reset) and over an interval shorter than ``min_interval_s`` (the collector
  passes half its poll interval: the poll at stop).
- What aiortc does without reporting it (``nack_count``, ``pli_count``, ``fir_count``,
  ``keyframes_*``, ``retransmitted_packets_sent``, ``target_bitrate_kbps``,
  ``available_outgoing_bitrate_kbps``, ``estimate_kbps``) and the audio ``mos`` estimate:
  :mod:`.hidden`, from ``ConnectionCounters.outbound_rtp``/``inbound_rtp`` and the snapshot.

Row granularity (one row per sample, peer, remote, kind, direction):

- ``audio``/``video``: one row per kind and direction; several streams of one kind are
  summed (counts), worst-of (jitter, fraction lost) and averaged (RTT). An outbound row needs
  a sender that sent something (aiortc gives every recvonly transceiver an idle sender).
- ``data``: all channels summed, one ``outbound`` and one ``inbound`` row (the frame has no
  channel-label column); present once the peer counts at least one channel.
- ``transport``: the DTLS transport(s) — every byte of SRTP, SRTCP and SCTP, without ICE
  checks and UDP/IP headers — one row per direction so ``bitrate_kbps`` stays one-way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rtclab.model import PATH_COLUMNS, CandidatePair, ConnectionCounters
from rtclab.net.link import LINK_COLUMNS, link_columns

from .hidden import audio_mos, inbound_feedback_columns, outbound_feedback_columns

__all__ = [
    "DEFAULT_CLOCK_RATES",
    "EVENT_COLUMNS",
    "NUMERIC_COLUMNS",
    "SAMPLE_COLUMNS",
    "STRING_COLUMNS",
    "ConnectionSnapshot",
    "snapshot_to_rows",
]

SAMPLE_COLUMNS: list[str] = [
    "t",
    "elapsed_s",
    "peer",
    "remote",
    "kind",
    "direction",
    "rtcp_rtt_ms",
    "sctp_rtt_ms",
    "ice_rtt_ms",
    "jitter_ms",
    "packets_sent",
    "packets_received",
    "packets_lost",
    "fraction_lost",
    "remote_packets_received",
    "remote_packets_lost",
    "remote_fraction_lost",
    "remote_jitter_ms",
    "bytes_sent",
    "bytes_received",
    "bitrate_kbps",
    "frames",
    "frames_per_second",
    "audio_frames",
    "audio_frames_per_second",
    # what aiortc does without reporting it (rtclab counts it; browsers report it)
    "nack_count",
    "pli_count",
    "fir_count",
    "keyframes_encoded",
    "keyframes_decoded",
    "retransmitted_packets_sent",
    "target_bitrate_kbps",
    "available_outgoing_bitrate_kbps",
    "estimate_kbps",
    "frames_dropped",
    "freeze_count",
    "total_freezes_duration_ms",
    "quality_limitation_reason",
    "mos",
    "messages_sent",
    "messages_received",
    "messages_dropped",
    "latency_ms_p50",
    "latency_ms_p95",
    "frames_untagged",
    "psnr_db",
    "ssim",
    *PATH_COLUMNS,
    "connection_state",
    *LINK_COLUMNS,
]

STRING_COLUMNS: list[str] = [
    "peer",
    "remote",
    "kind",
    "direction",
    "quality_limitation_reason",
    *PATH_COLUMNS,
    "connection_state",
]

NUMERIC_COLUMNS: list[str] = [c for c in SAMPLE_COLUMNS if c != "t" and c not in STRING_COLUMNS]

EVENT_COLUMNS: list[str] = ["t", "peer", "remote", "event", "value"]

DEFAULT_CLOCK_RATES: Mapping[str, int] = {"audio": 48_000, "video": 90_000}


@dataclass
class ConnectionSnapshot:
    """Everything the poller gathered for one (peer, remote) at one time.

    ``counters`` must be a copy taken at snapshot time: the next snapshot diffs against it.
    ``transport`` holds DTLS transport totals (``bytesSent``, ``bytesReceived``,
    ``packetsSent``, ``packetsReceived``) as a mapping or an ``RTCTransportStats``; it is read
    separately because aiortc's ``getStats`` is ``{}`` for a data-channel-only connection.
    ``clock_rates`` (kind -> Hz) is the negotiated RTP clock; missing kinds use the defaults.
    ``encoder_targets_bps`` (kind -> bps) is what each encoder aims at now;
    ``playout_delay_ms`` (kind -> ms) the fixed delay of the receiver's jitter buffer.
    ``link`` is the peer's impaired link now (``{"up": {...}, "down": {...}}``, see
    :meth:`rtclab.net.LinkState.status`): ``capacity_kbps`` and ``queue_delay_ms`` of the
    uplink on outbound rows, of the downlink on inbound rows.
    """

    peer: str
    remote: str
    t: datetime
    monotonic: float
    report: Mapping[str, Any] = field(default_factory=dict)
    transport: Mapping[str, Any] | None = None
    candidate_pair: CandidatePair | None = None
    counters: ConnectionCounters = field(default_factory=lambda: _new_counters())
    connection_state: str = "new"
    sctp_rtt_ms: float | None = None
    clock_rates: Mapping[str, int] = field(default_factory=dict)
    encoder_targets_bps: Mapping[str, int] = field(default_factory=dict)
    playout_delay_ms: Mapping[str, float] = field(default_factory=dict)
    link: Mapping[str, Any] | None = None


def snapshot_to_rows(
    current: ConnectionSnapshot,
    previous: ConnectionSnapshot | None,
    *,
    elapsed_s: float,
    min_interval_s: float = 0.0,
) -> list[dict[str, Any]]:
    """Rows (dicts keyed by ``SAMPLE_COLUMNS``) for one snapshot; rates need ``previous``.

    Rates over an interval shorter than ``min_interval_s`` are left empty: the poll at stop
    comes a fraction of an interval after the last one, and a few frames over a few
    milliseconds read as a spike (19 fps from a 15 fps source), not as a rate.
    """
    dt: float | None = None
    if previous is not None:
        dt = current.monotonic - previous.monotonic
        if dt <= 0 or dt < min_interval_s:
            dt = None
    interval = _Interval(_base_row(current, elapsed_s), current, previous, dt)
    rows: list[dict[str, Any]] = []
    rows.extend(_media_rows(interval))
    rows.extend(_data_rows(interval))
    rows.extend(_transport_rows(interval))
    if current.link:
        for row in rows:
            row.update(link_columns(current.link, row["direction"]))
    return rows


# -- rows --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Interval:
    """What every row builder reads: the row's common columns, the two snapshots and the
    seconds between them (``None``: no rate)."""

    base: dict[str, Any]
    current: ConnectionSnapshot
    previous: ConnectionSnapshot | None
    dt: float | None

    def pair(
        self, kind: str, outbound: dict[str, Any], inbound: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """An outbound and an inbound row of ``kind`` with these columns."""
        return [
            dict(self.base, kind=kind, direction="outbound", **outbound),
            dict(self.base, kind=kind, direction="inbound", **inbound),
        ]


def _base_row(snapshot: ConnectionSnapshot, elapsed_s: float) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(SAMPLE_COLUMNS)
    row.update(
        t=snapshot.t,
        elapsed_s=float(elapsed_s),
        peer=snapshot.peer,
        remote=snapshot.remote,
        connection_state=snapshot.connection_state,
    )
    pair = snapshot.candidate_pair
    if pair is not None:
        row.update(pair.columns())
    return row


def _media_rows(interval: _Interval) -> list[dict[str, Any]]:
    base, current, previous, dt = interval.base, interval.current, interval.previous, interval.dt
    outbound = _by_kind(current.report, "outbound-rtp")
    remote_inbound = _by_kind(current.report, "remote-inbound-rtp")
    inbound = _by_kind(current.report, "inbound-rtp")
    counters = current.counters
    prev_report: Mapping[str, Any] = previous.report if previous is not None else {}
    prev_counters = previous.counters if previous is not None else None

    kinds = sorted(
        set(outbound)
        | set(inbound)
        | set(counters.frames_sent)
        | set(counters.frames_received)
        | set(counters.rtp_bytes_received)
    )
    every_rin = [stats for items in remote_inbound.values() for stats in items]
    connection_rtt_ms = _rtt_ms(every_rin)
    if connection_rtt_ms is None:
        connection_rtt_ms = current.sctp_rtt_ms
    rows: list[dict[str, Any]] = []
    for kind in kinds:
        clock = current.clock_rates.get(kind) or DEFAULT_CLOCK_RATES.get(kind)

        # outbound: what we send and what the remote reported about it (RTCP RR)
        out = outbound.get(kind, [])
        packets_sent = _sum(out, "packetsSent")
        if (packets_sent or 0) > 0 or kind in counters.frames_sent:
            rin = remote_inbound.get(kind, [])
            bytes_sent = _sum(out, "bytesSent")
            prev_bytes = _sum(_by_kind(prev_report, "outbound-rtp").get(kind, []), "bytesSent")
            frames = counters.frames_sent.get(kind)
            prev_frames = prev_counters.frames_sent.get(kind) if prev_counters else None
            fraction = _max(rin, "fractionLost")
            row = dict(base, kind=kind, direction="outbound")
            row.update(
                rtcp_rtt_ms=_rtt_ms(rin),
                packets_sent=packets_sent,
                remote_packets_received=_sum(rin, "packetsReceived"),
                remote_packets_lost=_sum(rin, "packetsLost"),
                remote_fraction_lost=fraction / 256.0 if fraction is not None else None,
                remote_jitter_ms=_jitter_ms(_max(rin, "jitter"), clock),
                bytes_sent=bytes_sent,
                bitrate_kbps=_rate(bytes_sent, prev_bytes, dt, 8 / 1000),
            )
            row.update(_frame_columns(kind, frames, _rate(frames, prev_frames, dt)))
            row.update(
                outbound_feedback_columns(
                    kind, counters.outbound_rtp.get(kind), current.encoder_targets_bps.get(kind)
                )
            )
            rows.append(row)

        # inbound: what we receive, measured here
        inb = inbound.get(kind, [])
        if inb or kind in counters.rtp_bytes_received or kind in counters.frames_received:
            prev_inb = _by_kind(prev_report, "inbound-rtp").get(kind, [])
            received = _sum(inb, "packetsReceived")
            if received is None:
                received = counters.rtp_packets_received.get(kind)
            lost = _sum(inb, "packetsLost")
            bytes_received = counters.rtp_bytes_received.get(kind)
            prev_bytes = prev_counters.rtp_bytes_received.get(kind) if prev_counters else None
            frames = counters.frames_received.get(kind)
            prev_frames = prev_counters.frames_received.get(kind) if prev_counters else None
            fraction = _interval_fraction_lost(
                received, lost, _sum(prev_inb, "packetsReceived"), _sum(prev_inb, "packetsLost")
            )
            loss_so_far = fraction
            if fraction is None and received is not None and lost is not None:
                loss_so_far = max(lost, 0.0) / max(received + max(lost, 0.0), 1.0)
            stream = counters.inbound_rtp.get(kind)
            row = dict(base, kind=kind, direction="inbound")
            row.update(
                jitter_ms=_jitter_ms(_max(inb, "jitter"), clock),
                packets_received=received,
                packets_lost=lost,
                fraction_lost=fraction,
                bytes_received=bytes_received,
                bitrate_kbps=_rate(bytes_received, prev_bytes, dt, 8 / 1000),
            )
            row.update(_frame_columns(kind, frames, _rate(frames, prev_frames, dt)))
            row.update(inbound_feedback_columns(kind, stream))
            if kind == "audio":
                row["mos"] = audio_mos(
                    rtt_ms=connection_rtt_ms,
                    playout_delay_ms=current.playout_delay_ms.get(kind),
                    loss_fraction=loss_so_far,
                    current=stream,
                    previous=prev_counters.inbound_rtp.get(kind) if prev_counters else None,
                    received=counters.rtp_packets_received.get(kind),
                    prev_received=(
                        prev_counters.rtp_packets_received.get(kind) if prev_counters else None
                    ),
                )
            if kind == "video" and counters.frames_tracked:
                row.update(_freeze_columns(counters, prev_counters))
            rows.append(row)
    return rows


def _freeze_columns(
    counters: ConnectionCounters, previous: ConnectionCounters | None
) -> dict[str, float | None]:
    """Freezes and untagged frames of the interval: deltas of the receiver's counters."""
    names = ("freeze_count", "total_freezes_duration_ms", "frames_untagged")
    if previous is None or not previous.frames_tracked:
        return dict.fromkeys(names)
    return {
        name: _delta(float(getattr(counters, name)), float(getattr(previous, name)))
        for name in names
    }


def _delta(current: float, previous: float) -> float | None:
    return current - previous if current >= previous else None


def _data_rows(interval: _Interval) -> list[dict[str, Any]]:
    current, previous, dt = interval.current, interval.previous, interval.dt
    channels = list(current.counters.channels.values())
    if not channels:
        return []
    prev = list(previous.counters.channels.values()) if previous is not None else None

    def total(items: Iterable[Any] | None, name: str) -> int | None:
        return None if items is None else sum(int(getattr(c, name)) for c in items)

    bytes_sent = total(channels, "bytes_sent")
    bytes_received = total(channels, "bytes_received")
    return interval.pair(
        "data",
        {
            "sctp_rtt_ms": current.sctp_rtt_ms,
            "bytes_sent": bytes_sent,
            "bitrate_kbps": _rate(bytes_sent, total(prev, "bytes_sent"), dt, 8 / 1000),
            "messages_sent": total(channels, "messages_sent"),
            "messages_dropped": total(channels, "messages_dropped"),
        },
        {
            "sctp_rtt_ms": current.sctp_rtt_ms,
            "bytes_received": bytes_received,
            "bitrate_kbps": _rate(bytes_received, total(prev, "bytes_received"), dt, 8 / 1000),
            "messages_received": total(channels, "messages_received"),
        },
    )


def _transport_rows(interval: _Interval) -> list[dict[str, Any]]:
    current, previous, dt = interval.current, interval.previous, interval.dt
    transport = current.transport
    if transport is None:
        return []
    prev = previous.transport if previous is not None else None

    def get(obj: Any, name: str) -> float | None:
        return None if obj is None else _number(_field(obj, name))

    bytes_sent = get(transport, "bytesSent")
    bytes_received = get(transport, "bytesReceived")
    return interval.pair(
        "transport",
        {
            "sctp_rtt_ms": current.sctp_rtt_ms,
            "packets_sent": get(transport, "packetsSent"),
            "bytes_sent": bytes_sent,
            "bitrate_kbps": _rate(bytes_sent, get(prev, "bytesSent"), dt, 8 / 1000),
        },
        {
            "sctp_rtt_ms": current.sctp_rtt_ms,
            "packets_received": get(transport, "packetsReceived"),
            "bytes_received": bytes_received,
            "bitrate_kbps": _rate(bytes_received, get(prev, "bytesReceived"), dt, 8 / 1000),
        },
    )


# -- helpers -----------------------------------------------------------------------------


def _new_counters() -> ConnectionCounters:
    return ConnectionCounters()


def _field(obj: Any, name: str) -> Any:
    """``obj.name`` or ``obj[name]``: stats may arrive as aiortc dataclasses or plain dicts."""
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _by_kind(report: Mapping[str, Any], stat_type: str) -> dict[str, list[Any]]:
    grouped: dict[str, list[Any]] = {}
    for stats in report.values():
        if _field(stats, "type") == stat_type:
            kind = _field(stats, "kind")
            if isinstance(kind, str):
                grouped.setdefault(kind, []).append(stats)
    return grouped


def _values(items: list[Any], name: str) -> list[float | None]:
    return [_number(_field(s, name)) for s in items]


def _sum(items: list[Any], name: str) -> float | None:
    values = [v for v in _values(items, name) if v is not None]
    return sum(values) if values else None


def _max(items: list[Any], name: str) -> float | None:
    values = [v for v in _values(items, name) if v is not None]
    return max(values) if values else None


def _rtt_ms(remote_inbound: list[Any]) -> float | None:
    """Mean RTCP round trip (ms) of remote-inbound-rtp entries, None if none measured one."""
    rtts = [v for v in _values(remote_inbound, "roundTripTime") if v is not None]
    return sum(rtts) / len(rtts) * 1000.0 if rtts else None


def _frame_columns(kind: str, frames: float | None, rate: float | None) -> dict[str, Any]:
    """Video frames in ``frames``/``frames_per_second``; audio's 20 ms frames apart."""
    if kind == "audio":
        return {"audio_frames": frames, "audio_frames_per_second": rate}
    return {"frames": frames, "frames_per_second": rate}


def _jitter_ms(jitter: float | None, clock_rate: int | None) -> float | None:
    if jitter is None or not clock_rate:
        return None
    return jitter / clock_rate * 1000.0


def _rate(
    current: float | None, previous: float | None, dt: float | None, scale: float = 1.0
) -> float | None:
    """``(current - previous) / dt * scale``; ``None`` without a baseline or after a reset."""
    if current is None or previous is None or dt is None:
        return None
    delta = current - previous
    if delta < 0:
        return None
    return delta / dt * scale


def _interval_fraction_lost(
    received: float | None,
    lost: float | None,
    prev_received: float | None,
    prev_lost: float | None,
) -> float | None:
    """Loss over the sample interval, as RFC 3550 computes RTCP fraction lost (0-1)."""
    if received is None or lost is None or prev_received is None or prev_lost is None:
        return None
    d_received = received - prev_received
    d_lost = lost - prev_lost
    if d_received < 0:
        return None
    expected = d_received + max(d_lost, 0.0)
    if expected <= 0:
        return None
    return max(d_lost, 0.0) / expected
