"""EstimateView: the estimate figure redrawn in place as a collector's rows arrive."""

from __future__ import annotations

import asyncio
from typing import Any

from rtclab import Lab
from rtclab.stats.collector import StatsCollector
from rtclab.widgets import EstimateView


def _flow(collector: StatsCollector, sender: str, receiver: str, kbps: float) -> None:
    """One poll's rows of a video flow: the sender's outbound row, the receiver's inbound."""
    video: dict[str, Any] = {"kind": "video", "remote": receiver}
    collector.add_rows(
        [video | {"direction": "outbound", "capacity_kbps": 1000.0, "queue_delay_ms": 20.0,
                  "target_bitrate_kbps": kbps, "bitrate_kbps": kbps - 10}],
        peer=sender,
    )  # fmt: skip
    collector.add_rows(
        [{"kind": "video", "remote": sender, "direction": "inbound", "estimate_kbps": kbps + 5}],
        peer=receiver,
    )


def test_points_move_in_place_and_a_new_flow_lays_the_figure_out_anew() -> None:
    collector = StatsCollector()
    view = EstimateView(collector)  # outside a loop: each batch of rows redraws at once
    assert view.figure.data == () and view.layouts == 1
    _flow(collector, "alice", "bob", 500.0)
    names = [t.name for t in view.figure.data]
    assert names == [
        "link capacity",
        "encoder target",
        "sent (RTP payload)",
        "receiver's estimate (REMB)",
        "queue delay",
    ]
    layouts, target = view.layouts, view.figure.data[1]
    _flow(collector, "alice", "bob", 300.0)
    assert view.layouts == layouts and view.figure.data[1] is target  # the same trace, moved
    assert list(target.y) == [500.0, 300.0] and list(view.figure.data[3].y) == [505.0, 305.0]
    _flow(collector, "carol", "bob", 250.0)
    assert view.layouts > layouts  # its subplots
    assert [a.text for a in view.figure.layout.annotations][
        -1
    ] == "carol → bob: queue delay on the path (ms)"
    view.close()
    refreshes = view.refreshes
    _flow(collector, "alice", "bob", 200.0)
    assert view.closed and view.refreshes == refreshes


async def test_lab_live_estimate_figure_redraws_at_a_bounded_rate() -> None:
    async with Lab(stats_interval=10) as lab:
        view = lab.estimate_figure(live=True, sender="alice", max_rate_hz=2)
        assert isinstance(view, EstimateView)
        for kbps in range(300, 800, 10):  # 50 polls' rows at once: far above 2 redraws a second
            _flow(lab.collector, "alice", "bob", float(kbps))
            _flow(lab.collector, "carol", "bob", 250.0)  # not picked
        await asyncio.sleep(1.0)
        assert view.refreshes == 2  # the first draw, then one timer's for all those rows
        assert view.figure.data[1].y[-1] == 790.0 and len(view.figure.data[1].y) == 50
        assert {a.text.split(":")[0] for a in view.figure.layout.annotations} == {"alice → bob"}
        view.close()
