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
#: The network panels come first, then what the viewer sees (QoE, from tagged frames).
PANELS: list[tuple[str, str, str, str | None]] = [
    ("RTCP RTT (ms), video sent", "rtcp_rtt_ms", "outbound", "video"),
    ("Loss (%) the remote reports, video sent", "remote_fraction_lost", "outbound", "video"),
    ("Jitter (ms), video received", "jitter_ms", "inbound", "video"),
    ("Bitrate (kbps), audio + video sent", "bitrate_kbps", "outbound", None),
    ("Frames per second, video received", "frames_per_second", "inbound", "video"),
    ("Latency capture → decode, median (ms)", "latency_ms_p50", "inbound", "video"),
    ("Freezes per interval, video received", "freeze_count", "inbound", "video"),
    ("PSNR (dB), video received", "psnr_db", "inbound", "video"),
]

#: Panels side by side in each row of the grid, so a figure uses the output's width.
GRID_COLUMNS = 2

#: Columns whose quantity does not start at 0 (their y axis fits the data instead).
NOT_FROM_ZERO: frozenset[str] = frozenset({"psnr_db", "ssim"})

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


def panel_cell(index: int) -> tuple[int, int]:
    """``(row, col)`` (1-based) of panel ``index`` in the grid."""
    return index // GRID_COLUMNS + 1, index % GRID_COLUMNS + 1


def panel_grid(*, timeline: str | None = None, title: str = "", height: int = 150) -> go.Figure:
    """The empty grid of :data:`PANELS` (rows of :data:`GRID_COLUMNS`), x axes shared.

    ``timeline`` adds a full-width last row with that title. Quantities that start at 0
    (rates, loss, delays, counts) get y axes from 0, so noise around a flat line (0.01 fps)
    does not fill a panel.
    """
    panel_rows = -(-len(PANELS) // GRID_COLUMNS)
    specs: list[list[dict[str, Any] | None]] = [[{}] * GRID_COLUMNS for _ in range(panel_rows)]
    titles = [p[0] for p in PANELS] + [""] * (panel_rows * GRID_COLUMNS - len(PANELS))
    if timeline is not None:
        specs.append([{"colspan": GRID_COLUMNS}] + [None] * (GRID_COLUMNS - 1))
        titles.append(timeline)
    rows = len(specs)
    fig = make_subplots(
        rows=rows,
        cols=GRID_COLUMNS,
        specs=specs,
        subplot_titles=titles,
        vertical_spacing=0.35 / rows,
        horizontal_spacing=0.07,
    )
    for index, (_, column, _, _) in enumerate(PANELS):
        if column not in NOT_FROM_ZERO:
            row, col = panel_cell(index)
            fig.update_yaxes(rangemode="tozero", row=row, col=col)
    fig.update_xaxes(matches="x", showticklabels=True)  # one time axis: zoom one, zoom all
    fig.update_xaxes(title_text="elapsed (s)", row=rows, col=1)
    fig.update_layout(
        title=title, height=height * rows + 120, template="plotly_white", autosize=True
    )
    return fig


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


def _line(points: Mapping[float, float | None], **options: Any) -> go.Scatter:
    """A line through ``{x: y}`` points in x order (a ``None`` y is a gap)."""
    xs = sorted(points)
    return go.Scatter(x=xs, y=[points[x] for x in xs], **({"mode": "lines"} | options))


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
    fig = panel_grid(title=title, height=200)
    fig.update_layout(legend_title="peer → remote")
    if not samples.empty:
        records: list[dict[str, Any]] = samples.to_dict("records")  # type: ignore[assignment]
        points = panel_points(records)
        paths = pair_paths(records)
        for i, pair in enumerate(sorted(points)):
            name = trace_name(pair, paths.get(pair))
            shown = False  # one legend entry per pair, on its first panel with data
            for index, series in enumerate(points[pair]):
                if not series:
                    continue
                row, col = panel_cell(index)
                fig.add_trace(
                    _line(
                        series,
                        mode="lines+markers",
                        name=name,
                        legendgroup=name,
                        showlegend=not shown,
                        line={"color": pair_colour(i)},
                        marker={"size": 4},
                    ),
                    row=row,
                    col=col,
                )
                shown = True
    return fig


def write_html(fig: go.Figure, path: str | Path) -> Path:
    """A self-contained HTML file (plotly.js embedded): opens with no network."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.write_html(path, include_plotlyjs=True, full_html=True)
    return path


# --- capacity, estimate, target and send rate of one video flow (congestion control) ---------

#: (column, legend label, colour, dash, line shape) of the rate panel, in drawing order (the
#: dashed estimate last: it often equals the target, which would hide it).
#: Capacity, estimate and target hold until they change (steps); the send rate is measured
#: over each interval (a line through the points).
ESTIMATE_SERIES: list[tuple[str, str, str, str, str]] = [
    ("capacity_kbps", "link capacity", "#222222", "solid", "hv"),
    ("target_bitrate_kbps", "encoder target", "#2ca02c", "solid", "hv"),
    ("bitrate_kbps", "sent (RTP payload)", "#1f77b4", "solid", "linear"),
    ("estimate_kbps", "receiver's estimate (REMB)", "#ff7f0e", "dash", "hv"),
]
QUEUE_COLUMN = "queue_delay_ms"

#: ``(sender, receiver)`` of one video flow.
Flow = tuple[str, str]
FlowSeries = dict[str, dict[float, float]]


def estimate_points(rows: Iterable[Mapping[str, Any]]) -> dict[Flow, FlowSeries]:
    """``(sender, receiver) -> {column: {elapsed_s: value}}`` for the estimate figure.

    The sender's outbound video row gives the target, the send rate and its uplink's
    capacity and queue; the receiver's inbound row (``peer`` the receiver, ``remote`` the
    sender) gives the estimate it sent as REMB and its downlink's capacity and queue. A flow
    crosses both links: where both have a capacity at one poll, the narrower one is the
    flow's, and the queue delays add up. Missing values leave no point.
    """
    flows: dict[Flow, FlowSeries] = {}
    for row in rows:
        if row.get("kind") != "video":
            continue
        elapsed = _number(row.get("elapsed_s"))
        direction = row.get("direction")
        if elapsed is None or direction not in ("inbound", "outbound"):
            continue
        peer, remote = str(row.get("peer")), str(row.get("remote"))
        own: tuple[str, ...]
        if direction == "outbound":
            flow, own = (peer, remote), ("target_bitrate_kbps", "bitrate_kbps")
        else:
            flow, own = (remote, peer), ("estimate_kbps",)
        series = flows.setdefault(flow, {})
        for column in own:
            value = _number(row.get(column))
            if value is not None:
                series.setdefault(column, {})[elapsed] = value
        capacity, queue = _number(row.get("capacity_kbps")), _number(row.get(QUEUE_COLUMN))
        if capacity is not None:
            points = series.setdefault("capacity_kbps", {})
            points[elapsed] = min(capacity, points.get(elapsed, capacity))
        if queue is not None:
            points = series.setdefault(QUEUE_COLUMN, {})
            points[elapsed] = points.get(elapsed, 0.0) + queue
    return {flow: series for flow, series in flows.items() if series}


def estimate_figure(
    samples: pd.DataFrame | Iterable[Mapping[str, Any]],
    *,
    sender: str | Iterable[str] | None = None,
    receiver: str | Iterable[str] | None = None,
    title: str = "Capacity, estimate, target and send rate",
    height: int = 300,
) -> go.Figure:
    """Per video flow (``sender → receiver``): the link's capacity, the receiver's estimate,
    the encoder's target and what was sent, in kbps against time, over the queue delay the
    flow's packets would meet (ms), from a samples frame or its rows. ``sender``/``receiver``
    (a name or several) pick flows; by default all.

    One figure answers "does the sender follow the network?": the target should step down
    soon after the capacity does (or the queue grows, then drops packets), and climb back.
    """
    records: Iterable[Mapping[str, Any]]
    if isinstance(samples, pd.DataFrame):
        records = samples.to_dict("records")  # type: ignore[assignment]
    else:
        records = samples
    senders, receivers = _names(sender), _names(receiver)
    flows = {
        flow: series
        for flow, series in sorted(estimate_points(records).items())
        if (senders is None or flow[0] in senders) and (receivers is None or flow[1] in receivers)
    }
    with_queue = [QUEUE_COLUMN in series for series in flows.values()]
    rows = sum(2 if queue else 1 for queue in with_queue) or 1
    titles: list[str] = []
    heights: list[float] = []
    for (src, dst), queue in zip(flows, with_queue, strict=True):
        titles.append(f"{src} → {dst}: rates (kbps)")
        heights.append(2.0)
        if queue:
            titles.append(f"{src} → {dst}: queue delay on the path (ms)")
            heights.append(1.0)
    fig = make_subplots(
        rows=rows,
        cols=1,
        shared_xaxes=True,
        subplot_titles=titles or None,
        row_heights=heights or None,
        vertical_spacing=0.3 / rows,
    )
    row = 1
    shown: set[str] = set()  # one legend entry per series (a legend group), not per flow
    for series, queue in zip(flows.values(), with_queue, strict=True):
        for column, label, colour, dash, shape in ESTIMATE_SERIES:
            if series.get(column):
                line = {"color": colour, "dash": dash, "shape": shape, "width": 2}
                fig.add_trace(
                    _line(
                        series[column],
                        name=label,
                        legendgroup=column,
                        showlegend=column not in shown,
                        line=line,
                    ),
                    row=row,
                    col=1,
                )
                shown.add(column)
        fig.update_yaxes(rangemode="tozero", title_text="kbps", row=row, col=1)
        if queue:
            row += 1
            line = {"color": "#d62728", "shape": "hv", "width": 1.5}
            fig.add_trace(
                _line(
                    series[QUEUE_COLUMN],
                    name="queue delay",
                    legendgroup=QUEUE_COLUMN,
                    showlegend=QUEUE_COLUMN not in shown,
                    line=line,
                    fill="tozeroy",
                ),
                row=row,
                col=1,
            )
            shown.add(QUEUE_COLUMN)
            fig.update_yaxes(rangemode="tozero", title_text="ms", row=row, col=1)
        row += 1
    fig.update_xaxes(showticklabels=True)
    fig.update_xaxes(title_text="elapsed (s)", row=rows, col=1)
    fig.update_layout(
        title=title,
        height=int(height * sum(heights or [1.0]) / 2) + 160,
        template="plotly_white",
        legend={"tracegroupgap": 2},  # on the right: a horizontal one wraps over the title
    )
    return fig


def _names(names: str | Iterable[str] | None) -> set[str] | None:
    if names is None:
        return None
    return {names} if isinstance(names, str) else set(names)
