"""The picture of a congestion-control run: capacity, estimate, target and send rate."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = ["bwe_figure"]

_LINES = (
    ("estimate_kbps", "estimate (REMB)", "dash"),
    ("target_bitrate_kbps", "target", "solid"),
    ("send_rate_kbps", "sent", "dot"),
)


def bwe_figure(
    frame: pd.DataFrame, *, estimators: Sequence[str] | None = None, title: str | None = None
) -> go.Figure:
    """One panel per (case, estimator): the bottleneck's capacity (filled) and, per flow,
    the receiver's estimate, the sender's target and what it sent, in kbps over time."""
    import plotly.graph_objects as go
    from plotly.colors import qualitative
    from plotly.subplots import make_subplots

    runs = list(dict.fromkeys(zip(frame["case"], frame["estimator"], strict=True)))
    if estimators is not None:
        runs = [r for r in runs if r[1] in estimators]
    fig = make_subplots(
        rows=max(1, len(runs)),
        cols=1,
        shared_xaxes=True,
        subplot_titles=[f"RFC 8867 {c} — {e}" for c, e in runs],
        vertical_spacing=0.08,
    )
    colors = qualitative.Plotly
    for row, (case, estimator) in enumerate(runs, start=1):
        rows = frame[(frame["case"] == case) & (frame["estimator"] == estimator)]
        fwd = rows[rows["direction"] == "forward"].groupby("t")["capacity_kbps"].first()
        capacity = go.Scatter(
            x=fwd.index, y=fwd.to_numpy(), name="capacity", mode="lines", fill="tozeroy",
            line={"shape": "hv", "color": "#bbbbbb"}, legendgroup="capacity",
            showlegend=row == 1,
        )  # fmt: skip
        fig.add_trace(capacity, row=row, col=1)
        for i, (flow, mine) in enumerate(rows.groupby("flow", sort=False)):
            color = colors[i % len(colors)]
            for column, label, dash in _LINES:
                fig.add_trace(
                    go.Scatter(x=mine["t"], y=mine[column], name=f"{flow} {label}", mode="lines",
                               line={"color": color, "dash": dash}, legendgroup=f"{flow}{label}",
                               showlegend=row == 1),
                    row=row, col=1,
                )  # fmt: skip
        fig.update_yaxes(title_text="kbps", rangemode="tozero", row=row, col=1)
    fig.update_xaxes(title_text="seconds since the case started", row=max(1, len(runs)), col=1)
    fig.update_layout(
        title=title or "Capacity, estimate, target and send rate",
        height=max(440, 320 * len(runs)),
        margin={"t": 80},
    )
    return fig
