"""Plotly figures of stats rows: the static report figure and the pieces the live Dashboard shares.

One pure function, :func:`panel_points`, decides which number of which row goes on which
panel, so the demo's HTML report and the live dashboard can never disagree about a value.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

#: (title, column, direction, kind-or-None) per panel; one trace per peer -> remote in each.
#: ``kind=None`` sums audio and video (a pair's whole media bitrate).
PANELS: list[tuple[str, str, str, str | None]] = [
    ("RTCP RTT (ms), video sent", "rtcp_rtt_ms", "outbound", "video"),
    ("Loss (%) the remote reports, video sent", "remote_fraction_lost", "outbound", "video"),
    ("Jitter (ms), video received", "jitter_ms", "inbound", "video"),
    ("Bitrate (kbps), audio + video sent", "bitrate_kbps", "outbound", None),
    ("Frames per second, video received", "frames_per_second", "inbound", "video"),
]

#: Multiplier from the column's unit to the panel's unit (fraction 0-1 -> percent).
PANEL_SCALE: dict[str, float] = {"remote_fraction_lost": 100.0}

#: One colour per peer -> remote pair, the same in every panel (plotly's default cycle).
PALETTE: list[str] = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
]

Pair = tuple[str, str]


def pair_colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def _number(value: Any) -> float | None:
    """A float, or ``None`` for missing values (``None``, NaN, pandas NA, non-numbers)."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def panel_points(
    rows: Iterable[Mapping[str, Any]],
) -> dict[Pair, list[dict[float, float | None]]]:
    """``(peer, remote) -> [ {elapsed_s: value} per panel of PANELS ]`` for sample rows.

    A missing value of a single-kind panel stays ``None`` (a gap in the line); a summed
    panel gets a point only when at least one of its rows has a value.
    """
    points: dict[Pair, list[dict[float, float | None]]] = {}
    for row in rows:
        kind, direction = row.get("kind"), row.get("direction")
        if kind not in ("audio", "video"):
            continue
        elapsed = _number(row.get("elapsed_s"))
        if elapsed is None:
            continue
        pair = (str(row.get("peer")), str(row.get("remote")))
        panels = points.get(pair)
        if panels is None:
            panels = points[pair] = [{} for _ in PANELS]
        for series, (_, column, panel_direction, panel_kind) in zip(panels, PANELS, strict=True):
            if direction != panel_direction or (panel_kind is not None and kind != panel_kind):
                continue
            value = _number(row.get(column))
            if value is not None:
                value *= PANEL_SCALE.get(column, 1.0)
            if panel_kind is not None:
                series[elapsed] = value
            elif value is not None:
                series[elapsed] = (series.get(elapsed) or 0.0) + value
    return points


def pair_paths(rows: Iterable[Mapping[str, Any]]) -> dict[Pair, str]:
    """``(peer, remote) -> "host/host"`` (local/remote candidate type) from the latest rows."""
    paths: dict[Pair, str] = {}
    for row in rows:
        local, remote = row.get("local_candidate_type"), row.get("remote_candidate_type")
        if isinstance(local, str) and isinstance(remote, str) and local and remote:
            paths[(str(row.get("peer")), str(row.get("remote")))] = f"{local}/{remote}"
    return paths


def trace_name(pair: Pair, path: str | None = None) -> str:
    """The legend entry of a pair: ``alice → bob host/host`` (the path once it is known)."""
    name = f"{pair[0]} → {pair[1]}"
    return f"{name} {path}" if path else name


def stats_figure(samples: pd.DataFrame, *, title: str = "rtclab stats") -> go.Figure:
    """One panel per metric, one colour per ``peer -> remote`` (legend groups toggle all panels)."""
    fig = make_subplots(
        rows=len(PANELS),
        cols=1,
        shared_xaxes=True,
        subplot_titles=[p[0] for p in PANELS],
        vertical_spacing=0.05,
    )
    if not samples.empty:
        records: list[dict[str, Any]] = samples.to_dict("records")  # type: ignore[assignment]
        points = panel_points(records)
        paths = pair_paths(records)
        for i, pair in enumerate(sorted(points)):
            name = trace_name(pair, paths.get(pair))
            shown = False  # one legend entry per pair, on its first panel with data
            for row, series in enumerate(points[pair], start=1):
                if not series:
                    continue
                xs = sorted(series)
                fig.add_trace(
                    go.Scatter(
                        x=xs,
                        y=[series[x] for x in xs],
                        mode="lines+markers",
                        name=name,
                        legendgroup=name,
                        showlegend=not shown,
                        line={"color": pair_colour(i)},
                        marker={"size": 4},
                    ),
                    row=row,
                    col=1,
                )
                shown = True
    fig.update_xaxes(title_text="elapsed (s)", row=len(PANELS), col=1)
    fig.update_layout(
        title=title, height=220 * len(PANELS), template="plotly_white", legend_title="peer → remote"
    )
    return fig


def write_html(fig: go.Figure, path: str | Path) -> Path:
    """A self-contained HTML file (plotly.js embedded): opens with no network."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.write_html(path, include_plotlyjs=True, full_html=True)
    return path
