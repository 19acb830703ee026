"""The sans-I/O link: delay, jitter, random and burst loss, rate limit with a queue."""

from __future__ import annotations

import statistics

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
