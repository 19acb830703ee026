"""Pure: samples + events frames -> one summary row per peer -> remote (what the demo prints)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

SUMMARY_COLUMNS = [
    "peer",
    "remote",
    "connect_ms",
    "path",
    "rtcp_rtt_ms",
    "send_kbps",
    "recv_kbps",
    "recv_fps",
    "recv_loss_pct",
    "recv_jitter_ms",
    "recv_mos",
    "signaling_ms",
    "ice_connect_ms",
    "dtls_connect_ms",
    "first_frame_ms",
]

#: summary column <- the peer event that carries it (ms, one per connection; the latest wins)
TIMING_EVENTS = {
    "connect_ms": "connected",
    "signaling_ms": "signaling-ms",
    "ice_connect_ms": "ice-connect-ms",
    "dtls_connect_ms": "dtls-connect-ms",
    "first_frame_ms": "first-frame-ms",
}


def _median(series: pd.Series) -> float:
    values = pd.to_numeric(series, errors="coerce").dropna()
    return float(values.median()) if len(values) else math.nan


def _last(series: pd.Series) -> Any:
    values = series.dropna()
    return values.iloc[-1] if len(values) else None


def _stream_total(rows: pd.DataFrame, column: str) -> float:
    """Sum, over streams (kind), of the median per-sample value: audio + video bitrate."""
    if rows.empty:
        return math.nan
    per_kind = [_median(group[column]) for _, group in rows.groupby("kind")]
    per_kind = [v for v in per_kind if not math.isnan(v)]
    return float(sum(per_kind)) if per_kind else math.nan


def _timings(events: pd.DataFrame | None) -> dict[str, dict[tuple[str, str], float]]:
    """Per summary column of :data:`TIMING_EVENTS`: (peer, remote) -> ms."""
    out: dict[str, dict[tuple[str, str], float]] = {column: {} for column in TIMING_EVENTS}
    if events is None or events.empty:
        return out
    names = {event: column for column, event in TIMING_EVENTS.items()}
    for _, event in events[events["event"].isin(list(names))].iterrows():
        try:
            value = float(event["value"])
        except (TypeError, ValueError):
            continue
        out[names[str(event["event"])]][(str(event["peer"]), str(event["remote"]))] = value
    return out


def pair_summary(samples: pd.DataFrame, events: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per (peer, remote): connect time, path, median RTT, bitrates, fps, loss and jitter.

    Columns say their direction: ``send_kbps`` is what ``peer`` sends to ``remote``; the
    ``recv_*`` columns are what ``peer`` receives *from* ``remote`` (``recv_loss_pct``,
    ``recv_jitter_ms`` of its video, ``recv_fps`` of its video). ``rtcp_rtt_ms`` is the
    median RTCP round trip of ``peer``'s outbound media rows (``rtcp_rtt_ms`` column), the
    media path's RTT; the SCTP and STUN measures (``sctp_rtt_ms``, ``ice_rtt_ms``) are left
    out, so a data-only pair has none. Browser rows (``Lab`` adds them from the page's own
    getStats) fill the same columns and read the same way; only ``connect_ms`` comes from
    the kernel peers' ``connected`` events, which browsers do not send.

    ``recv_mos`` is the median E-model estimate of the received audio (``mos``). The
    connection timings come from the kernel peers' events (see :data:`TIMING_EVENTS`):
    ``signaling_ms`` (offer sent -> answer applied; the offerer's row only),
    ``ice_connect_ms`` (ICE checking -> connected), ``dtls_connect_ms`` (ICE connected ->
    DTLS connected) and ``first_frame_ms`` (connected -> first decoded video frame).
    """
    rows: list[dict[str, Any]] = []
    timings = _timings(events)
    connect = timings["connect_ms"]
    if samples.empty:
        pairs = sorted(connect)
    else:
        pairs = sorted(
            {(str(p), str(r)) for p, r in samples[["peer", "remote"]].itertuples(index=False)}
            | set(connect)
        )
    for peer, remote in pairs:
        if samples.empty:
            mine = samples
        else:
            mine = samples[(samples["peer"] == peer) & (samples["remote"] == remote)]
        media = mine[mine["kind"].isin(["audio", "video"])] if not mine.empty else mine
        outbound = media[media["direction"] == "outbound"] if not media.empty else media
        inbound = media[media["direction"] == "inbound"] if not media.empty else media
        video_in = inbound[inbound["kind"] == "video"] if not inbound.empty else inbound
        path = None
        if not mine.empty:
            local, remote_type = (
                _last(mine["local_candidate_type"]),
                _last(mine["remote_candidate_type"]),
            )
            if local is not None and remote_type is not None:
                path = f"{local}/{remote_type}"
        loss_pct = math.nan
        if not inbound.empty:
            latest = inbound.sort_values("t").groupby("kind").tail(1)
            lost = pd.to_numeric(latest["packets_lost"], errors="coerce").fillna(0).sum()
            got = pd.to_numeric(latest["packets_received"], errors="coerce").fillna(0).sum()
            if lost + got > 0:
                loss_pct = float(max(lost, 0) / (max(lost, 0) + got) * 100)
        rtt = _median(outbound["rtcp_rtt_ms"]) if not outbound.empty else math.nan
        rows.append(
            {
                "peer": peer,
                "remote": remote,
                "connect_ms": connect.get((peer, remote), math.nan),
                "path": path,
                "rtcp_rtt_ms": rtt,
                "send_kbps": _stream_total(outbound, "bitrate_kbps"),
                "recv_kbps": _stream_total(inbound, "bitrate_kbps"),
                "recv_fps": (
                    _median(video_in["frames_per_second"]) if not video_in.empty else math.nan
                ),
                "recv_loss_pct": loss_pct,
                "recv_jitter_ms": (
                    _median(video_in["jitter_ms"]) if not video_in.empty else math.nan
                ),
                "recv_mos": _median(inbound["mos"]) if "mos" in inbound else math.nan,
                **{
                    column: timings[column].get((peer, remote), math.nan)
                    for column in TIMING_EVENTS
                    if column != "connect_ms"
                },
            }
        )
    summary: pd.DataFrame = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    return summary
