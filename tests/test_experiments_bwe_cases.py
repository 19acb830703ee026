"""rtclab.experiments.bwe without peers: the RFC 8867 case table, RFC 8868 metrics on
hand-made frames, short TCP-like transfers on a modelled link, the samples -> frame join."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from rtclab.experiments import bwe_test
from rtclab.experiments.bwe import CASES, FRAME_COLUMNS, case_named, jain_index
from rtclab.experiments.bwe.experiment import _cases
from rtclab.experiments.bwe.metrics import first_time, metrics_table, steps_table
from rtclab.experiments.bwe.run import flow_frame, netns_unsupported
from rtclab.experiments.bwe.traffic import ShortTransfers
from rtclab.net import Link
from rtclab.net.cross import simulate
from rtclab.net.link import LinkState


def test_the_case_table_follows_rfc8867_section_5() -> None:
    assert list(CASES) == ["5.1", "5.2", "5.3", "5.4", "5.5", "5.6", "5.7", "5.8"]
    single = CASES["5.1"]
    assert single.schedule == ((0, 1000.0), (40, 2500.0), (60, 600.0), (80, 1000.0))
    assert (single.duration_s, single.queue_ms, single.flows[0].delay_ms) == (100.0, 300.0, 50.0)
    assert CASES["5.2"].schedule[-2:] == ((75, 1000.0), (100, 2000.0))
    assert CASES["5.3"].backward == ((0, 2000.0), (35, 800.0), (70, 2000.0))
    assert [f.start_s for f in CASES["5.4"].flows] == [0.0, 20.0, 40.0]
    assert [f.delay_ms for f in CASES["5.5"].flows] == [10.0, 25.0, 50.0, 100.0, 150.0]
    assert CASES["5.6"].long_tcp == (0.0, 120.0) and CASES["5.6"].flows[0].start_s == 5.0
    assert CASES["5.7"].short_tcp is not None and CASES["5.7"].short_tcp.sources == 10
    assert CASES["5.8"].flows[1].pauses == ((40.0, 60.0),)
    assert all(case.notes for case in CASES.values())  # the aiortc clamp, at least


def test_time_scale_shortens_times_only() -> None:
    fast = CASES["5.5"].scaled(0.25)
    assert fast.duration_s == 75.0 and fast.time_scale == 0.25
    assert [f.start_s for f in fast.flows] == [0.0, 2.5, 5.0, 7.5, 10.0]
    assert [f.delay_ms for f in fast.flows] == [10.0, 25.0, 50.0, 100.0, 150.0]
    single = CASES["5.1"].scaled(0.25)
    assert single.schedule == ((0, 1000.0), (10, 2500.0), (15, 600.0), (20, 1000.0))
    assert single.queue_ms == 300.0
    assert single.steps() == [(10, 1000.0, 2500.0), (15, 2500.0, 600.0), (20, 600.0, 1000.0)]
    assert single.capacity_at(14.9) == 2500.0 and single.capacity_at(15.0) == 600.0
    short = CASES["5.7"].scaled(0.5).short_tcp
    assert short is not None and short.mean_off_s == 10.0  # the offered load stays
    with pytest.raises(ValueError, match="time_scale"):
        CASES["5.1"].scaled(0)
    with pytest.raises(ValueError, match=r"unknown case '5\.9'"):
        case_named("5.9")
    assert [c.key for c in _cases("all")] == list(CASES)
    assert [c.key for c in _cases(["5.4", CASES["5.1"]])] == ["5.4", "5.1"]


def test_jain_index() -> None:
    assert jain_index([500, 500, 500]) == pytest.approx(1.0)
    assert jain_index([900, 0, 0]) == pytest.approx(1 / 3)
    assert jain_index([100, 300]) == pytest.approx(400**2 / (2 * (100**2 + 300**2)))
    assert math.isnan(jain_index([])) and jain_index([0, 0]) == 1.0


def test_first_time() -> None:
    times, values = [9.5, 10.2, 10.7, 11.2], [900, 800, 500, 400]
    assert first_time(times, values, 10.0, 20.0, lambda v: v < 600) == pytest.approx(0.7)
    assert first_time(times, values, 10.0, 11.0, lambda v: v < 450) is None
    assert first_time(times, [math.nan] * 4, 10.0, 20.0, lambda v: True) is None


def _frame(case_key: str, flows: dict[str, list[tuple[float, float, float]]]) -> pd.DataFrame:
    """Rows (t, target, received) per flow on the case's capacity; counters 1 % lost."""
    case = CASES[case_key].scaled(0.1)
    rows = []
    for flow, samples in flows.items():
        for i, (t, target, received) in enumerate(samples):
            rows.append({
                "t": t, "case": case.key, "estimator": "x", "flow": flow,
                "direction": "forward", "capacity_kbps": case.capacity_at(t),
                "target_bitrate_kbps": target, "receive_rate_kbps": received,
                "queue_delay_ms": 10.0 * i, "packets_lost": float(i),
                "packets_received": 99.0 * i, "rtt_ms": 100.0,
            })  # fmt: skip
    return pd.DataFrame(rows).reindex(columns=FRAME_COLUMNS)


def test_steps_say_when_the_target_went_under_and_when_90_percent_came() -> None:
    case = CASES["5.1"].scaled(0.1)  # steps at 4 s (2.5 Mbps), 6 s (0.6), 8 s (1.0); 10 s
    samples = [(3.5, 900, 850), (4.5, 1400, 1300), (5.5, 1500, 1450), (6.2, 1200, 700),
               (6.7, 550, 560), (7.5, 500, 520), (8.5, 700, 700), (9.5, 950, 920)]  # fmt: skip
    steps = steps_table(_frame("5.1", {"flow1": samples}), case, "x")
    assert steps["to_kbps"].tolist() == [2500.0, 600.0, 1000.0]
    assert steps["lowered"].tolist() == [False, True, False]
    down = steps.iloc[1]
    assert down["seconds_under"] == pytest.approx(0.7) and down["target_before_kbps"] == 1500
    assert steps.iloc[0]["seconds_under"] is None  # only lowered steps have one
    assert steps.iloc[0]["seconds_to_90"] is None and not steps.iloc[0]["reachable_90"]
    assert steps.iloc[1]["seconds_to_90"] == pytest.approx(0.2)  # 700 >= 540 at 6.2 s
    assert steps.iloc[2]["seconds_to_90"] == pytest.approx(1.5)  # 920 >= 900 at 9.5 s
    never = [(t, 1200.0, r) for t, _, r in samples]
    assert steps_table(_frame("5.1", {"flow1": never}), case, "x").iloc[1]["seconds_under"] is None


def test_metrics_utilization_queue_loss_and_fairness() -> None:
    case = CASES["5.4"].scaled(0.1)  # 3.5 Mbps; flows from 0, 2 and 4 s; 12 s
    flows = {
        "flow1": [(t, 1000.0, 1750.0) for t in (5.0, 6.0, 7.0)],
        "flow2": [(t, 1000.0, 875.0) for t in (5.0, 6.0, 7.0)],
        "flow3": [(t, 1000.0, 875.0) for t in (5.0, 6.0, 7.0)],
    }
    table = metrics_table(_frame("5.4", flows), case, "x").set_index("flow")
    assert table.loc["flow1", "utilization"] == pytest.approx(0.5)
    assert table.loc["all", "utilization"] == pytest.approx(1.0)
    assert table.loc["flow2", "loss_ratio"] == pytest.approx(0.01)
    assert table.loc["all", "loss_ratio"] == pytest.approx(0.01)
    assert table.loc["flow1", "queue_delay_ms_mean"] == pytest.approx(10.0)
    assert table.loc["all", "jain_fairness"] == pytest.approx(
        3500**2 / (3 * (1750**2 + 2 * 875**2))
    )
    assert math.isnan(table.loc["flow1", "jain_fairness"])


def test_short_transfers_send_files_of_the_given_sizes_with_gaps() -> None:
    spec = CASES["5.7"].short_tcp
    assert spec is not None
    link = LinkState(Link(rate_kbps=2000, queue_ms=300))
    flows = ShortTransfers(spec=spec, rtt_ms=100.0, seed=3)
    simulate(link, [flows], until=60.0)
    # 10 sources, gaps of 10 s on average: ~2 + 10 * 60 / 10 transfers, a few hundred kB
    assert 30 <= flows.transfers <= 100
    assert 30_000 * (flows.transfers - 10) <= flows.sent_bytes <= 51_500 * flows.transfers
    assert flows.delivered_bytes + flows.lost_packets * 1500 == flows.sent_bytes
    idle = ShortTransfers(spec=spec, rtt_ms=100.0, seed=3)
    simulate(LinkState(Link(rate_kbps=2000)), [idle], until=1e-6)
    assert idle.transfers == spec.initially_on  # the others wait for their first gap


def test_flow_frame_joins_sender_and_receiver_rows() -> None:
    case = CASES["5.1"].scaled(0.1)
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    common = {"kind": "video", "capacity_kbps": math.nan, "queue_delay_ms": 5.0}
    rows = []
    for i in range(1, 4):
        t = start + timedelta(seconds=i * 2.0)
        rows.append({"t": t, "peer": "flow1-send", "remote": "flow1-recv", "direction":
                     "outbound", "target_bitrate_kbps": 500.0 + i, "bitrate_kbps": 450.0,
                     "rtcp_rtt_ms": 100.0, **common})  # fmt: skip
        rows.append({"t": t + timedelta(milliseconds=30), "peer": "flow1-recv",
                     "remote": "flow1-send", "direction": "inbound", "estimate_kbps": 600.0,
                     "bitrate_kbps": 440.0, "packets_lost": 2.0 * i,
                     "packets_received": 100.0 * i, **common})  # fmt: skip
    frame = flow_frame(pd.DataFrame(rows), case, "x", start, [(0.0, 0)])
    assert list(frame.columns) == FRAME_COLUMNS
    assert frame["t"].tolist() == [2.0, 4.0, 6.0]
    assert frame["capacity_kbps"].tolist() == [1000.0, 2500.0, 600.0]  # from the schedule
    assert frame["target_bitrate_kbps"].tolist() == [501.0, 502.0, 503.0]
    assert frame["estimate_kbps"].tolist() == [600.0] * 3
    assert frame["loss"].iloc[1] == pytest.approx(2 / 102)


async def test_bwe_test_refuses_what_it_cannot_run() -> None:
    assert netns_unsupported(CASES["5.1"]) == []
    assert len(netns_unsupported(CASES["5.3"])) == 1
    assert netns_unsupported(CASES["5.6"]) == []  # one long TCP flow: TcpBulk
    with pytest.raises(ValueError, match=r"cannot run case 5\.7 yet: short TCP transfers"):
        await bwe_test("5.7", backend="netns", progress=False)
    with pytest.raises(ValueError, match="unknown case"):
        await bwe_test("6.1", progress=False)
    with pytest.raises(ValueError, match="share a label"):
        await bwe_test("5.1", ["rtclab.cc:LossBasedAimd", "rtclab.cc:LossBasedAimd"])
