"""Dashboard fed by a real StatsCollector polling real peers: in-place, rate-bounded, windowed."""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import until as _until

from rtclab.peer import Peer
from rtclab.stats.collector import StatsCollector
from rtclab.stats.figures import PANELS
from rtclab.widgets import Dashboard
from rtclab.widgets._live import MAX_INTERVAL_S, refresh_delay
from rtclab.widgets.dashboard import STATE_COLOURS

MakePeer = Callable[..., Awaitable[Peer]]

pytestmark = pytest.mark.slow


@pytest.fixture
async def collector(make_peer: MakePeer) -> AsyncIterator[StatsCollector]:
    """Two connected peers polled 5x a second (faster than the dashboard may redraw)."""
    stats = StatsCollector(interval=0.2)
    alice = await make_peer("alice", audio=False)
    bob = await make_peer("bob", audio=False)
    for peer in (alice, bob):
        peer.add_listener(stats.record_event)
        stats.add(peer)
    # the events before the listener was added (the dashboard reads state changes from events)
    for peer in (alice, bob):
        for event in list(peer.events):
            stats.record_event(peer.name, event.remote, event.event, event.value)
    await asyncio.gather(alice.wait_connected(count=1), bob.wait_connected(count=1))
    await stats.start()
    try:
        yield stats
    finally:
        await stats.stop()


def _pair_traces(dashboard: Dashboard) -> list[Any]:
    return [t for t in dashboard.figure.data if t.legendgroup != "state"]


async def test_updates_in_place_at_a_bounded_rate_over_a_window(
    collector: StatsCollector, tmp_path: Path
) -> None:
    dashboard = Dashboard(collector, window_s=2.0, max_rate_hz=2.0)
    figure = dashboard.figure
    updates: list[float] = []
    original = figure.plotly_update

    def counting(*args: Any, **kwargs: Any) -> Any:
        updates.append(time.monotonic())
        return original(*args, **kwargs)

    figure.plotly_update = counting  # type: ignore[method-assign]
    try:
        await _until(lambda: len(_pair_traces(dashboard)) == 2 * len(PANELS), what="traces")
        await _until(
            lambda: all(len(t.x) > 0 for t in _pair_traces(dashboard)),
            timeout=5,
            what="data in every pair trace",
        )
        names = {t.name for t in _pair_traces(dashboard)}
        assert names == {"alice → bob host/host", "bob → alice host/host"}
        legend = [t for t in _pair_traces(dashboard) if t.showlegend]
        assert len(legend) == 2  # one legend entry per pair, not one per panel
        colours: dict[str, set[str]] = {t.name: set() for t in _pair_traces(dashboard)}
        for t in _pair_traces(dashboard):
            colours[t.name].add(t.line.color)
        assert all(len(c) == 1 for c in colours.values())  # one colour per pair, every panel
        assert len({c.pop() for c in colours.values()}) == 2

        # measure: the collector samples at 5 Hz, the figure may change at most 2x a second
        count_before, trace_count = len(updates), len(figure.data)
        started = time.monotonic()
        await asyncio.sleep(3.0)
        elapsed = time.monotonic() - started
        made = len(updates) - count_before
        assert 3 <= made <= 2.0 * elapsed + 1, f"{made} updates in {elapsed:.1f}s"
        gaps = [b - a for a, b in itertools.pairwise(updates)]
        assert min(gaps) >= 0.5 - 0.02, f"updates {min(gaps) * 1000:.0f} ms apart"
        assert dashboard.figure is figure and len(figure.data) == trace_count  # in place

        # bounded window: nothing older than window_s before the newest point
        xs = [x for t in _pair_traces(dashboard) for x in t.x]
        assert max(xs) - min(xs) <= dashboard.window_s + 1e-9
        rtt = next(t for t in _pair_traces(dashboard) if t.name.startswith("alice"))
        assert all(0 <= y < 1000 for y in rtt.y if y == y)  # ms on loopback, not seconds

        # the connection-state timeline shows both pairs connected
        connected = figure.data[list(STATE_COLOURS).index("connected")]
        assert {"alice → bob", "bob → alice"} <= {y for y in connected.y if y}
    finally:
        dashboard.close()
    refreshes = dashboard.refreshes
    await asyncio.sleep(0.6)
    assert dashboard.refreshes == refreshes  # closed: no more updates

    html = dashboard.to_html(tmp_path / "dashboard.html").read_text()
    assert len(html) > 1_000_000  # plotly.js embedded
    assert "alice \\u2192 bob host\\u002fhost" in html  # plotly escapes → and / in its JSON
    assert "<script src=" not in html  # plotly.js embedded: opens offline


async def test_backfills_from_the_collector_and_lab_dashboard_replaces_its_previous(
    tmp_path: Path,
) -> None:
    from rtclab import Lab

    async with Lab(stats_interval=0.25) as lab:
        await lab.peer("alice", room="r", audio=False)
        await lab.peer("bob", room="r", audio=False)
        await lab.wait_connected()
        await _until(lambda: len(lab.collector.samples) > 10, what="samples")
        first = lab.dashboard(window_s=30)
        # rows the collector had before the dashboard existed are drawn at once
        assert first.refreshes == 1 and any(len(t.x) for t in _pair_traces(first))
        second = lab.dashboard()
        assert first.closed and not second.closed
        if importlib.util.find_spec("kaleido") is None:
            with pytest.raises(RuntimeError, match="pip install kaleido"):
                second.to_png(tmp_path / "d.png")
        second.close()


def test_outside_a_loop_rows_fed_by_hand_redraw_synchronously() -> None:
    from datetime import datetime, timezone

    collector = StatsCollector()
    dashboard = Dashboard(collector, window_s=10)
    now = datetime.now(timezone.utc)
    for second in range(30):
        dashboard._on_sample(
            [
                {
                    "t": now,
                    "elapsed_s": float(second),
                    "peer": "a",
                    "remote": "b",
                    "kind": "video",
                    "direction": "outbound",
                    "rtcp_rtt_ms": 1.5,
                    "remote_fraction_lost": 0.01,
                    "bitrate_kbps": 300.0,
                    "local_candidate_type": "relay",
                    "remote_candidate_type": "srflx",
                }
            ]
        )
    rtt, loss = _pair_traces(dashboard)[0], _pair_traces(dashboard)[1]
    assert rtt.name == "a → b relay/srflx"
    assert list(rtt.x) == [float(s) for s in range(19, 30)]  # the last 10 s only
    assert loss.y[-1] == pytest.approx(1.0)  # fraction -> percent
    dashboard.close()


def test_long_windows_are_thinned_to_max_points() -> None:
    """A 1-hour window of 20 pairs stays a bounded message: at most max_points per trace."""
    from datetime import datetime, timezone

    dashboard = Dashboard(StatsCollector(), window_s=3600, max_points=100)
    now = datetime.now(timezone.utc)
    pairs = [(f"p{i}", f"q{i}") for i in range(20)]
    for second in range(3600):
        dashboard._ingest(
            {"t": now, "elapsed_s": float(second), "peer": p, "remote": r, "kind": "video",
             "direction": "outbound", "rtcp_rtt_ms": float(second)}
            for p, r in pairs
        )  # fmt: skip
    dashboard.refresh()
    traces = _pair_traces(dashboard)
    assert len(traces) == 20 * len(PANELS) and dashboard.refreshes == 1
    rtt = traces[0]
    assert 90 <= len(rtt.x) <= 100 and rtt.x[-1] == 3599.0 and list(rtt.y) == list(rtt.x)
    dashboard.close()


def test_panels_fill_a_grid_and_rates_start_at_zero() -> None:
    """Panels sit side by side (the figure uses the output's width) and a flat fps line
    with 0.01 of noise stays flat: every axis of a quantity that starts at 0 starts there."""
    from rtclab.stats.figures import NOT_FROM_ZERO, panel_cell, panel_grid

    figure = panel_grid(timeline="Connection state")
    domains = set()
    for index, (_, column, _, _) in enumerate(PANELS):
        row, col = panel_cell(index)
        axes = list(figure.select_yaxes(row=row, col=col))
        assert len(axes) == 1
        assert (axes[0].rangemode == "tozero") == (column not in NOT_FROM_ZERO), column
        domains.add(tuple(next(iter(figure.select_xaxes(row=row, col=col))).domain))
    assert len(domains) == 2  # two columns of panels
    assert {a.matches for a in figure.select_xaxes()} - {None} == {"x"}  # one time axis


def test_refreshes_spread_out_when_one_is_costly_or_the_loop_is_late() -> None:
    assert refresh_delay(0.5, 0.002, 0.0) == 0.5  # cheap and on time: the rate bound
    assert refresh_delay(0.5, 0.03, 0.0) == pytest.approx(1.5)  # 30 ms each: 2 % of the time
    assert refresh_delay(0.5, 0.002, 0.1) == 0.5  # a little late: unchanged
    assert refresh_delay(0.5, 0.002, 0.4) == pytest.approx(2.0)  # a saturated loop
    assert refresh_delay(0.5, 1.0, 3.0) == MAX_INTERVAL_S  # bounded
    assert refresh_delay(10.0, 0.002, 3.0) == 10.0  # a slower rate asked for still holds
