"""Cross traffic models sharing a link's queue, on made-up time (the emulated network's
adapter is tested with real peers in test_net_link_events.py)."""

from __future__ import annotations

import pytest

from rtclab.net import Link, LinkState
from rtclab.net.cross import AimdFlow, ConstantRate, OnOff, simulate


def _kbps(flow_bytes: int, seconds: float) -> float:
    return flow_bytes * 8 / 1000 / seconds


def test_constant_and_on_off_rates() -> None:
    link = LinkState(Link(rate_kbps=2000))
    steady, bursty = ConstantRate(rate_kbps=500), OnOff(rate_kbps=800, on_s=1.0, off_s=3.0)
    simulate(link, [steady, bursty], until=20.0)
    assert _kbps(steady.delivered_bytes, 20.0) == pytest.approx(500, rel=0.02)
    assert _kbps(bursty.delivered_bytes, 20.0) == pytest.approx(800 / 4, rel=0.05)
    assert steady.lost_packets == bursty.lost_packets == 0


def test_aimd_fills_the_link_and_saws_the_queue() -> None:
    link = LinkState(Link(rate_kbps=2000, queue_bytes=50_000))
    flow = AimdFlow(rtt_ms=40)
    delays = []

    class Probe(ConstantRate):  # a tiny flow that samples the queue delay the AIMD flow makes
        def step(self, now: float, state: LinkState) -> float | None:
            delays.append(state.queue_delay_ms(now))
            return now + 0.05

    simulate(link, [flow, Probe(rate_kbps=1)], until=30.0)
    assert _kbps(flow.delivered_bytes, 30.0) > 0.85 * 2000
    assert flow.lost_packets > 0  # it probes until the queue overflows, like Reno
    full_ms = 50_000 * 8 / 2000  # a full queue: 200 ms
    assert max(delays) == pytest.approx(full_ms, rel=0.1)
    assert min(delays[len(delays) // 2 :]) < 0.6 * full_ms  # the window halves: the queue drains


def test_aimd_takes_what_a_constant_flow_leaves() -> None:
    link = LinkState(Link(rate_kbps=2000, queue_bytes=40_000))
    video, greedy = ConstantRate(rate_kbps=800), AimdFlow(rtt_ms=30)
    simulate(link, [video, greedy], until=40.0)
    total = _kbps(video.delivered_bytes + greedy.delivered_bytes, 40.0)
    assert total > 0.9 * 2000
    assert _kbps(greedy.delivered_bytes, 40.0) > 900
    assert video.lost_packets > 0  # a greedy flow makes the shared queue drop the video's too
