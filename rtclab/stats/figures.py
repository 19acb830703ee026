"""Static plotly figures of a samples frame (the demo's HTML report; live plots build on them)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

#: (title, column, direction, kind-or-None) per panel; one trace per peer -> remote in each.
PANELS: list[tuple[str, str, str, str | None]] = [
    ("RTT (ms), video sent", "rtt_ms", "outbound", "video"),
    ("Packet loss (%), video sent", "fraction_lost", "outbound", "video"),
    ("Jitter (ms), video received", "jitter_ms", "inbound", "video"),
    ("Bitrate (kbps), audio + video sent", "bitrate_kbps", "outbound", None),
    ("Frames per second, video received", "frames_per_second", "inbound", "video"),
]


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
        palette = [
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
        pairs = sorted(
            {(str(p), str(r)) for p, r in samples[["peer", "remote"]].itertuples(index=False)}
        )
        for i, (peer, remote) in enumerate(pairs):
            colour = palette[i % len(palette)]
            name = f"{peer} → {remote}"
            mine = samples[(samples["peer"] == peer) & (samples["remote"] == remote)]
            for row, (_, column, direction, kind) in enumerate(PANELS, start=1):
                rows = mine[mine["direction"] == direction]
                rows = (
                    rows[rows["kind"] == kind]
                    if kind
                    else rows[rows["kind"].isin(["audio", "video"])]
                )
                if rows.empty:
                    continue
                series = (
                    rows.groupby("elapsed_s")[column].sum(min_count=1)
                    if kind is None
                    else (rows.set_index("elapsed_s")[column])
                )
                series = pd.to_numeric(series, errors="coerce")
                if column == "fraction_lost":
                    series = series * 100
                fig.add_trace(
                    go.Scatter(
                        x=series.index,
                        y=series.values,
                        mode="lines+markers",
                        name=name,
                        legendgroup=name,
                        showlegend=row == 1,
                        line={"color": colour},
                        marker={"size": 4},
                    ),
                    row=row,
                    col=1,
                )
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
