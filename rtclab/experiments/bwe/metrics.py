"""RFC 8868 metrics of a congestion-control run, from its per-flow frame. Pure pandas.

The frame has one row per flow per sample (:data:`FRAME_COLUMNS`); times are seconds from
the case's start, so every number here is as fine as the sampling interval (a step time of
0.5 s means "by the first sample at least 0.5 s after the step").
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from .cases import AIORTC_MAX_KBPS, BweCase

__all__ = [
    "FRAME_COLUMNS",
    "METRIC_COLUMNS",
    "STEP_COLUMNS",
    "first_time",
    "jain_index",
    "metrics_table",
    "steps_table",
]

FRAME_COLUMNS = [
    "t",
    "case",
    "estimator",
    "flow",
    "direction",
    "capacity_kbps",
    "target_bitrate_kbps",
    "estimate_kbps",
    "send_rate_kbps",
    "receive_rate_kbps",
    "queue_delay_ms",
    "rtt_ms",
    "loss",
    "packets_lost",
    "packets_received",
    "cross_kbps",
]

METRIC_COLUMNS = [
    "case",
    "estimator",
    "flow",
    "receive_kbps_mean",
    "utilization",
    "queue_delay_ms_mean",
    "queue_delay_ms_p95",
    "loss_ratio",
    "rtt_ms_mean",
    "jain_fairness",
]

STEP_COLUMNS = [
    "case",
    "estimator",
    "direction",
    "t",
    "from_kbps",
    "to_kbps",
    "lowered",
    "target_before_kbps",
    "seconds_under",
    "seconds_to_90",
    "reachable_90",
]


def jain_index(rates: Iterable[float]) -> float:
    """Jain's fairness index (sum x)^2 / (n sum x^2): 1 when all get the same, 1/n when one
    gets everything; NaN for no rates, 1 for one flow or when nobody got anything."""
    xs = [float(x) for x in rates if x == x]  # NaN-free
    if not xs:
        return math.nan
    squares = sum(x * x for x in xs)
    if squares == 0:
        return 1.0
    return sum(xs) ** 2 / (len(xs) * squares)


def first_time(
    times: Sequence[float], values: Sequence[float], since: float, until: float, test: Any
) -> float | None:
    """Seconds from ``since`` to the first sample in ``[since, until)`` whose value passes
    ``test`` (NaN never does); None if none does."""
    for t, v in zip(times, values, strict=True):
        if since <= t < until and v == v and test(v):
            return float(t - since)
    return None


def _total(frame: pd.DataFrame, column: str) -> pd.Series:
    """``column`` summed over the flows at each sample time (NaN where no flow has one)."""
    series: pd.Series = frame.groupby("t")[column].sum(min_count=1)
    return series


def steps_table(frame: pd.DataFrame, case: BweCase, estimator: str) -> pd.DataFrame:
    """One row per capacity step of ``case`` (each direction): how long until the flows'
    total target went under a lowered capacity (``seconds_under``; None: never before the
    next step or the end; 0 when it already was, see ``target_before_kbps``, the last
    total target sampled before the step) and until what they received reached 90 % of
    the new capacity (``seconds_to_90``). ``reachable_90`` says whether aiortc's 1.5 Mbps
    clamp allows it at all."""
    rows: list[dict[str, Any]] = []
    for direction in ("forward", "backward"):
        steps = case.steps(direction)
        if not steps:
            continue
        flows = frame[frame["direction"] == direction] if "direction" in frame else frame
        target = _total(flows, "target_bitrate_kbps")
        received = _total(flows, "receive_rate_kbps")
        ends = [t for t, _, _ in steps[1:]] + [case.duration_s + 1e9]
        senders = sum(1 for f in case.flows if f.direction == direction)
        for (t, before, after), end in zip(steps, ends, strict=True):
            lowered = after < before
            under = (
                first_time(list(target.index), list(target), t, end, lambda v, c=after: v < c)
                if lowered
                else None
            )
            to_90 = first_time(
                list(received.index), list(received), t, end, lambda v, c=after: v >= 0.9 * c
            )
            rows.append({
                "case": case.key, "estimator": estimator, "direction": direction, "t": t,
                "from_kbps": before, "to_kbps": after, "lowered": lowered,
                "target_before_kbps": _last_before(target, t),
                "seconds_under": under, "seconds_to_90": to_90,
                "reachable_90": 0.9 * after <= AIORTC_MAX_KBPS * senders,
            })  # fmt: skip
    table: pd.DataFrame = pd.DataFrame(rows, columns=STEP_COLUMNS)
    for column in ("seconds_under", "seconds_to_90"):  # None (never) stays None, not NaN
        table[column] = pd.Series([r[column] for r in rows], index=table.index, dtype=object)
    return table


def _last_before(series: pd.Series, t: float) -> float:
    """The last value sampled before ``t`` (NaN if none)."""
    earlier = series[series.index < t].dropna()
    return float(earlier.iloc[-1]) if len(earlier) else math.nan


def _loss_ratio(rows: pd.DataFrame) -> float:
    """Packets lost / expected over the run, from the receiver's cumulative counters."""
    lost, expected = _loss_parts(rows)
    return lost / expected if expected > 0 else math.nan


def _loss_parts(rows: pd.DataFrame) -> tuple[float, float]:
    """(lost, expected) packets over ``rows``, from cumulative counters."""
    lost = pd.to_numeric(rows["packets_lost"], errors="coerce").dropna()
    got = pd.to_numeric(rows["packets_received"], errors="coerce").dropna()
    if lost.empty or got.empty:
        return 0.0, 0.0
    dl = float(lost.iloc[-1] - lost.iloc[0])
    return dl, dl + float(got.iloc[-1] - got.iloc[0])


def _mean(series: pd.Series) -> float:
    values = pd.to_numeric(series, errors="coerce").dropna()
    return float(values.mean()) if len(values) else math.nan


def _p95(series: pd.Series) -> float:
    values = pd.to_numeric(series, errors="coerce").dropna()
    return float(values.quantile(0.95)) if len(values) else math.nan


def _utilization(rows: pd.DataFrame) -> float:
    """Mean over sample times of (received, summed over the rows' flows) / capacity."""
    received = _total(rows, "receive_rate_kbps")
    capacity = rows.groupby("t")["capacity_kbps"].first()
    ratio = (received / capacity).replace([math.inf, -math.inf], math.nan)
    return _mean(ratio)


def metrics_table(frame: pd.DataFrame, case: BweCase, estimator: str) -> pd.DataFrame:
    """RFC 8868's metrics per flow, over the time it ran, and for all forward flows together
    (``flow="all"``; with Jain's fairness over the flows' mean received rates while all of
    them ran)."""
    rows: list[dict[str, Any]] = []
    for flow in case.flows:
        mine = frame[frame["flow"] == flow.name]
        end = case.duration_s if flow.end_s is None else flow.end_s
        mine = mine[(mine["t"] >= flow.start_s) & (mine["t"] <= end)]
        rows.append({
            "case": case.key, "estimator": estimator, "flow": flow.name,
            "receive_kbps_mean": _mean(mine["receive_rate_kbps"]),
            "utilization": _utilization(mine),
            "queue_delay_ms_mean": _mean(mine["queue_delay_ms"]),
            "queue_delay_ms_p95": _p95(mine["queue_delay_ms"]),
            "loss_ratio": _loss_ratio(mine), "rtt_ms_mean": _mean(mine["rtt_ms"]),
            "jain_fairness": math.nan,
        })  # fmt: skip
    forward = [f for f in case.flows if f.direction == "forward"]
    rows_fwd = frame[frame["flow"].isin([f.name for f in forward])]
    together_from = max(f.start_s for f in forward)
    together_to = min(case.duration_s if f.end_s is None else f.end_s for f in forward)
    common = rows_fwd[(rows_fwd["t"] >= together_from) & (rows_fwd["t"] <= together_to)]
    shares = common.groupby("flow")["receive_rate_kbps"].mean()
    queue = rows_fwd.groupby("t")["queue_delay_ms"].first()
    parts = [_loss_parts(frame[frame["flow"] == f.name]) for f in forward]
    lost, expected = sum(p[0] for p in parts), sum(p[1] for p in parts)
    loss = lost / expected if expected > 0 else math.nan
    rows.append({
        "case": case.key, "estimator": estimator, "flow": "all",
        "receive_kbps_mean": _mean(_total(rows_fwd, "receive_rate_kbps")),
        "utilization": _utilization(rows_fwd[rows_fwd["t"] >= min(f.start_s for f in forward)]),
        "queue_delay_ms_mean": _mean(queue), "queue_delay_ms_p95": _p95(queue),
        "loss_ratio": loss, "rtt_ms_mean": _mean(rows_fwd["rtt_ms"]),
        "jain_fairness": jain_index(shares.tolist()) if len(shares) else math.nan,
    })  # fmt: skip
    table: pd.DataFrame = pd.DataFrame(rows, columns=METRIC_COLUMNS)
    return table
