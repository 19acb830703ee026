"""bwe_test on namespace links: peer processes, the capacity schedule through NFQUEUE."""

from __future__ import annotations

from helpers import needs_root
from test_net_netns import _ours

from rtclab.experiments import bwe_test
from rtclab.experiments.bwe import CASES, FRAME_COLUMNS, STEP_COLUMNS


@needs_root
async def test_single_flow_case_through_namespaces_follows_the_schedule() -> None:
    """RFC 8867 5.1 at a fifth of its length with the loss-based AIMD (the estimator whose
    sender reaches the 2.5 Mbps step's neighbourhood, so the drop to 0.6 Mbps is a real
    step): the frame carries the namespace link's capacity on its schedule, the sender's
    target and what got through; packets queued in the NFQUEUE bottleneck; the result says
    per lowered step how long the target took to get under it (``None`` = never)."""
    result = await bwe_test(
        "5.1", "rtclab.cc:LossBasedAimd", backend="netns", time_scale=0.2, progress=False
    )
    assert result.errors == {}, result.errors
    frame = result.frame
    assert list(frame.columns) == FRAME_COLUMNS
    case = CASES["5.1"].scaled(0.2)
    away = frame[[all(abs(t - s) > 1.0 for s, _ in case.schedule) for t in frame["t"]]]
    assert len(away) >= 10
    assert (away["capacity_kbps"] == [case.capacity_at(t) for t in away["t"]]).all()
    assert frame["target_bitrate_kbps"].notna().mean() > 0.8
    assert frame["receive_rate_kbps"].max() > 200  # video crossed the namespace bottleneck
    assert frame["queue_delay_ms"].max() > 5  # ...and waited in its queue
    assert result.metrics["rtt_ms_mean"].min() >= 90  # 2 x 50 ms one way (RTCP's rounding)
    steps = result.steps
    assert list(steps.columns) == STEP_COLUMNS
    assert steps[steps["lowered"]]["to_kbps"].tolist() == [600.0]
    assert not _ours()  # its namespaces are gone
