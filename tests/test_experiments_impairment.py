"""impairment_sweep: configured impairment shows up in the stats the lab collects."""

from __future__ import annotations

import os

import pytest

from rtclab.experiments.impairment import SUMMARY_COLUMNS, impairment_sweep
from rtclab.net import Link

pytestmark = pytest.mark.slow


async def test_delay_and_jitter_show_up_in_the_stats() -> None:
    result = await impairment_sweep(
        links=[Link(), Link(delay_ms=50), Link(jitter_ms=30)],
        duration=4.0,
        width=160,
        height=120,
        progress=False,
    )
    frame = result.frame
    assert list(frame.columns) == SUMMARY_COLUMNS
    assert frame["connected"].all()
    clean, delayed, jittery = (frame.iloc[i] for i in range(3))
    assert delayed["rtt_ms"] == pytest.approx(100.0, rel=0.15)  # 50 ms each way
    assert clean["rtt_ms"] < 10
    assert jittery["jitter_ms"] > clean["jitter_ms"] + 3
    # reordering makes the sender retransmit (RTX): the media stream's counters must stay
    # the media stream's (aiortc reports both SSRCs under one stats id)
    s = result.samples
    got = s[(s["kind"] == "video") & (s["direction"] == "inbound") & (s["setting"] == "±30ms")]
    assert got["packets_received"].dropna().is_monotonic_increasing
    assert got["packets_received"].max() > 80
    assert set(result.samples["setting"]) == {"clean", "50ms", "±30ms"}
    assert len(result.figure.data) == 4


async def test_random_loss_shows_up_as_loss_fraction() -> None:
    # 60 fps for 15 s: as many packets as 30 fps for 30 s, in half the CI time
    result = await impairment_sweep(
        loss=[0.05], duration=15.0, width=160, height=120, fps=60.0, seed=3, progress=False
    )
    row = result.frame.iloc[0]
    assert row["connected"]
    assert row["loss_fraction"] == pytest.approx(0.05, abs=0.02)
    assert row["link_loss_fraction"] == pytest.approx(0.05, abs=0.02)
    assert row["link_packets_sent"] > 1000  # what the ±0.02 above needs (3 sigma)


def test_grid_validation() -> None:
    import asyncio

    with pytest.raises(ValueError):
        asyncio.run(impairment_sweep(links=[], progress=False))
    with pytest.raises(ValueError):
        Link(loss=-0.1)


@pytest.mark.netns
@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
async def test_the_namespace_backend_measures_the_same_impairments() -> None:
    """The same sweep on kernel sockets (NFQUEUE impairment): the same frames and the same
    tolerances as the emulated tests above."""
    links = [Link(delay_ms=50), Link(loss=0.05)]
    # 60 fps for 15 s: as many packets as 30 fps for 30 s (the loss tolerance needs ~1,000),
    # in half the CI time
    netns = await impairment_sweep(
        links=links, duration=15.0, width=160, height=120, fps=60.0, seed=5, backend="netns",
        progress=False,
    )  # fmt: skip
    frame = netns.frame
    assert list(frame.columns) == SUMMARY_COLUMNS
    assert frame["connected"].all(), frame["error"]
    delayed, lossy = frame.iloc[0], frame.iloc[1]
    assert delayed["rtt_ms"] == pytest.approx(100.0, rel=0.15)
    assert lossy["loss_fraction"] == pytest.approx(0.05, abs=0.02)
    assert lossy["link_loss_fraction"] == pytest.approx(0.05, abs=0.02)
    assert lossy["link_packets_sent"] > 1000  # what the ±0.02 above needs (3 sigma)
    assert delayed["frames_per_second"] > 25
    assert set(netns.samples["peer"]) == {"sender", "receiver"}
