"""The sans-I/O link: delay, jitter, random and burst loss, rate limit with a queue."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from rtclab.net import Link, LinkState


def test_delay_and_order() -> None:
    state = LinkState(Link(delay_ms=50, jitter_ms=20), seed=1)
    times = [state.admit(i * 0.02, 100) for i in range(1000)]
    arrivals = [t for t in times if t is not None]
    assert arrivals == sorted(arrivals)  # FIFO unless reorder=True
    delays = [t - i * 0.02 for i, t in enumerate(times) if t is not None]
    assert 0.045 < statistics.median(delays) < 0.075


def test_random_loss_rate_and_determinism() -> None:
    def losses(seed: int) -> list[bool]:
        state = LinkState(Link(loss=0.05), seed=seed)
        return [state.admit(i * 0.01, 100) is None for i in range(20000)]

    first = losses(4)
    assert first == losses(4)
    assert first != losses(5)
    assert sum(first) / len(first) == pytest.approx(0.05, abs=0.006)


def test_burst_loss_keeps_the_average_but_clusters() -> None:
    state = LinkState(Link(loss=0.05, burst=5), seed=2)
    lost = [state.admit(i * 0.01, 100) is None for i in range(50000)]
    assert sum(lost) / len(lost) == pytest.approx(0.05, abs=0.01)
    bursts = []
    run = 0
    for x in lost:
        if x:
            run += 1
        elif run:
            bursts.append(run)
            run = 0
    assert statistics.mean(bursts) == pytest.approx(5, rel=0.25)


def test_rate_limit_serializes_and_tail_drops() -> None:
    state = LinkState(Link(rate_kbps=800, queue_bytes=10_000), seed=0)  # 100 kB/s
    arrivals = [state.admit(0.0, 1000) for _ in range(20)]  # a 20 kB burst at once
    kept = [t for t in arrivals if t is not None]
    assert len(kept) == 10 and state.queue_drops == 10
    assert kept[1] - kept[0] == pytest.approx(0.01)  # 1000 B at 100 kB/s
    assert state.admit(1.0, 1000) == pytest.approx(1.01)  # drained


def test_validation() -> None:
    with pytest.raises(ValueError):
        Link(loss=1.5)
    with pytest.raises(ValueError):
        Link(rate_kbps=0)
    assert Link().is_clean and not Link(delay_ms=1).is_clean


# --- capacity that changes: schedules, Mahimahi traces, queues in bytes or ms, up/down ----------


def _saturate(
    state: LinkState, seconds: float, offered_kbps: float, size: int = 1200, start: float = 0.0
) -> list[float]:
    """Arrival times of a constant ``offered_kbps`` stream of ``size``-byte packets."""
    gap = size * 8 / (offered_kbps * 1000)
    times = (state.admit(start + i * gap, size) for i in range(int(seconds / gap)))
    return [t for t in times if t is not None]


def test_mahimahi_trace_delivers_its_average_rate(tmp_path: Path) -> None:
    # one opportunity a ms for 20 ms, then none until ms 100, looping: bursty, 2,520 kbit/s
    stamps = (*range(1, 21), 100)
    lines = [str(ms) for ms in stamps]
    path = tmp_path / "bursty.trace"
    path.write_text("\n".join(lines) + "\n")
    link = Link.from_mahimahi(path, queue_bytes=200_000)
    assert link.trace == stamps
    state = LinkState(link)
    arrivals = _saturate(state, 20.0, offered_kbps=4000)
    delivered_kbps = len(arrivals) * 1200 * 8 / 1000 / (arrivals[-1] - arrivals[0])
    mean_kbps = 21 * 1500 * 8 / 100  # 21 opportunities every 100 ms
    assert delivered_kbps == pytest.approx(mean_kbps, rel=0.05)
    assert state.capacity_kbps(5.0) == pytest.approx(mean_kbps, rel=0.05)
    # departures happen only at opportunities (whole milliseconds of the trace)
    assert all(round(t * 1000) % 100 in (*range(1, 21), 0) for t in arrivals)


def test_trace_credits_are_shared_by_small_packets() -> None:
    # one opportunity per ms = 12 Mbit/s: three 500-byte packets share one 1,500-byte credit
    state = LinkState(Link(trace=(1, 2, 3, 4)))
    departures = [state.admit(0.0, 500) for _ in range(4)]
    assert departures == pytest.approx([0.001, 0.001, 0.001, 0.002])


def test_overload_queue_delay_is_queue_size_over_rate() -> None:
    for link in (
        Link(rate_kbps=1000, queue_bytes=25_000),  # 25 kB at 125 kB/s: 200 ms
        Link(trace=tuple(range(1, 1001, 12)), queue_bytes=25_000),  # 1,000 kbit/s
        Link(rate_kbps=1000, queue_ms=200),
    ):
        state = LinkState(link)
        gap = 1200 * 8 / 2_000_000  # 2 Mbit/s offered: twice the capacity
        delays = []
        now = 0.0
        for i in range(int(10 / gap)):
            now = i * gap
            arrive = state.admit(now, 1200)
            if arrive is not None and now > 2.0:
                delays.append(arrive - now)
        assert statistics.median(delays) == pytest.approx(0.2, rel=0.2), link
        assert state.queue_drops > 0
        assert state.queue_delay_ms(now) == pytest.approx(200, rel=0.2)


def test_capacity_schedule_steps_and_restarts_on_set_link() -> None:
    link = Link(rate_kbps=1000, schedule=[(2, 2500), (4, 600)], queue_bytes=500_000)
    assert link.schedule == ((2.0, 2500.0), (4.0, 600.0))
    state = LinkState(link, start=10.0)
    assert [state.capacity_kbps(10.0 + t) for t in (0, 1.9, 2, 3.5, 4, 100)] == [
        1000,
        1000,
        2500,
        2500,
        600,
        600,
    ]
    arrivals = _saturate(state, 6.0, offered_kbps=5000, start=10.0)
    window = [t for t in arrivals if 12.5 <= t < 13.5]  # in the 2,500 kbit/s step
    assert len(window) * 1200 * 8 / 1000 == pytest.approx(2500, rel=0.05)
    state.set_link(Link(rate_kbps=300, queue_bytes=500_000), now=20.0)
    assert state.capacity_kbps(20.0) == 300
    first = state.admit(20.0, 1200)
    assert first is not None and first >= 20.0 + 1200 * 8 / 300_000 - 1e-9


def test_link_down_drops_everything_and_up_resumes() -> None:
    state = LinkState(Link(delay_ms=10))
    assert state.admit(0.0, 100) == pytest.approx(0.01)
    state.set_link(state.link.replace(up=False), now=1.0)
    assert state.admit(1.0, 100) is None and state.down_drops == 1
    assert state.capacity_kbps(1.0) == 0.0
    state.set_link(state.link.replace(up=True), now=2.0)
    assert state.admit(2.0, 100) == pytest.approx(2.01)


def test_links_travel_as_json() -> None:
    link = Link(delay_ms=5, schedule=[(1, 300)], rate_kbps=100, trace=None, queue_ms=50)
    assert Link(**json.loads(json.dumps(link.to_json()))) == link
    traced = Link(trace=(1, 3, 7))
    assert Link(**json.loads(json.dumps(traced.to_json()))) == traced


def test_capacity_validation(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="increase"):
        Link(rate_kbps=1, schedule=[(2, 100), (1, 200)])
    with pytest.raises(ValueError, match="needs rate_kbps"):
        Link(schedule=[(1, 100)])
    with pytest.raises(ValueError, match="last rate"):
        Link(schedule=[(0, 100), (1, 0)])
    with pytest.raises(ValueError, match="queue_ms"):
        Link(queue_ms=0)
    bad = tmp_path / "bad.trace"
    bad.write_text("5\n3\n")
    with pytest.raises(ValueError, match="line 2"):
        Link.from_mahimahi(bad)


def test_a_schedule_set_outside_a_loop_starts_with_the_first_packet() -> None:
    from rtclab.net import Network

    with Network() as net:
        host = net.host("h")
        host.set_link(Link(rate_kbps=100, schedule=[(1, 1000)]))  # no loop runs here
        assert host.down.capacity_kbps(5000.0) == 100  # the schedule has not started
        host.down.admit(5000.0, 100)
        assert host.down.capacity_kbps(5001.5) == 1000
