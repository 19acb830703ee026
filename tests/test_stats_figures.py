"""The estimate figure's data: each number of a sample row lands on its flow and series."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from rtclab.stats.figures import estimate_figure, estimate_points


def _row(t: float, peer: str, remote: str, direction: str, **values: Any) -> dict[str, Any]:
    row = {"elapsed_s": t, "peer": peer, "remote": remote, "kind": "video", "direction": direction}
    return row | values


def _samples() -> pd.DataFrame:
    """alice sends video to bob over alice's 1000 -> 300 kbps uplink; bob's downlink is
    500 kbps; carol sends to bob on clean links (no capacity, no queue)."""
    rows = []
    for t, up in ((1.0, 1000.0), (2.0, 300.0)):
        rows += [
            _row(t, "alice", "bob", "outbound", capacity_kbps=up, queue_delay_ms=40.0,
                 target_bitrate_kbps=600.0, bitrate_kbps=580.0 + t),
            _row(t, "bob", "alice", "inbound", capacity_kbps=500.0, queue_delay_ms=5.0,
                 estimate_kbps=600.0 - t, bitrate_kbps=9999.0, target_bitrate_kbps=None),
            _row(t, "carol", "bob", "outbound", capacity_kbps=None, queue_delay_ms=math.nan,
                 target_bitrate_kbps=250.0, bitrate_kbps=240.0),
            _row(t, "bob", "carol", "inbound", estimate_kbps=float("nan")),
            {"elapsed_s": t, "peer": "alice", "remote": "bob", "kind": "audio",
             "direction": "outbound", "bitrate_kbps": 32.0, "capacity_kbps": 1.0},
        ]  # fmt: skip
    return pd.DataFrame(rows)


def test_points_match_the_receivers_estimate_to_its_sender_and_take_the_narrower_link() -> None:
    records: list[dict[str, Any]] = _samples().to_dict("records")  # type: ignore[assignment]
    points = estimate_points(records)
    assert set(points) == {("alice", "bob"), ("carol", "bob")}
    alice = points[("alice", "bob")]
    assert alice["estimate_kbps"] == {1.0: 599.0, 2.0: 598.0}  # bob's inbound row from alice
    assert alice["target_bitrate_kbps"] == {1.0: 600.0, 2.0: 600.0}
    assert alice["bitrate_kbps"] == {1.0: 581.0, 2.0: 582.0}  # the sender's, not bob's 9999
    assert alice["capacity_kbps"] == {1.0: 500.0, 2.0: 300.0}  # min(uplink, downlink)
    assert alice["queue_delay_ms"] == {1.0: 45.0, 2.0: 45.0}  # both queues on the path
    carol = points[("carol", "bob")]
    assert set(carol) == {"target_bitrate_kbps", "bitrate_kbps"}  # no link, no estimate


def test_figure_overlays_the_four_rates_over_the_queue_per_flow() -> None:
    fig = estimate_figure(_samples())
    titles = [a.text for a in fig.layout.annotations]
    assert titles == [
        "alice → bob: rates (kbps)",
        "alice → bob: queue delay on the path (ms)",
        "carol → bob: rates (kbps)",
    ]
    alice = [t for t in fig.data if t.yaxis == "y"]
    assert [t.name for t in alice] == [
        "link capacity",
        "encoder target",
        "sent (RTP payload)",
        "receiver's estimate (REMB)",
    ]
    capacity = alice[0]
    assert list(capacity.x) == [1.0, 2.0] and list(capacity.y) == [500.0, 300.0]
    assert capacity.line.shape == "hv"  # a capacity holds until it changes
    queue = [t for t in fig.data if t.yaxis == "y2"]
    assert [t.name for t in queue] == ["queue delay"] and list(queue[0].y) == [45.0, 45.0]
    carol = [t for t in fig.data if t.yaxis == "y3"]
    assert [t.name for t in carol] == ["encoder target", "sent (RTP payload)"]
    assert not any(t.showlegend for t in carol)  # one legend entry per series, not per flow


def test_figure_picks_flows_by_sender_and_is_empty_without_video() -> None:
    fig = estimate_figure(_samples(), sender=["carol"])
    assert [a.text for a in fig.layout.annotations] == ["carol → bob: rates (kbps)"]
    assert estimate_figure(_samples(), sender="alice", receiver="carol").data == ()
    assert estimate_figure(pd.DataFrame(columns=["elapsed_s", "kind"])).data == ()
