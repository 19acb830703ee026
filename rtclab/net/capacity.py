"""Capacity that changes over time, as a service curve: bytes a link can serve since it started.

A FIFO queue behind a link of varying capacity needs two questions answered: how many bytes
could the link have served by time ``t`` (:meth:`served`), and when has it served ``b``
bytes (:meth:`time_of`). A packet's departure is then ``time_of(position + size)``, and the
bytes still queued are ``tail - served(now)``. Two shapes answer them with a bisection:

- :class:`ScheduleCapacity`: piecewise-constant rates (``[(t_s, rate_kbps), ...]``), e.g. the
  capacity steps of RFC 8867's variable-capacity case; the last rate holds.
- :class:`TraceCapacity`: a Mahimahi trace, one millisecond timestamp per line at which one
  1,500-byte delivery opportunity occurs; it loops with the period of its last timestamp.
  Opportunities are byte credits: a small packet leaves part of one for the next packet
  already waiting, as in Mahimahi's link queue; credits nobody waits for are lost.

Times are seconds since the link's start (its epoch), so both are pure and testable.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = ["MTU_BYTES", "ScheduleCapacity", "TraceCapacity", "read_mahimahi"]

MTU_BYTES = 1500  # one Mahimahi delivery opportunity


class ScheduleCapacity:
    """Piecewise-constant capacity: ``steps`` are ``(start_s, rate_kbps)``, sorted by time,
    the first at 0. A rate of 0 (an outage that keeps the queue) may not be the last one."""

    __slots__ = ("_cum", "_rates", "_starts")

    def __init__(self, steps: Sequence[tuple[float, float]]) -> None:
        if not steps or steps[0][0] != 0:
            raise ValueError("a capacity schedule starts at t=0")
        if steps[-1][1] <= 0:
            raise ValueError("the last rate of a capacity schedule must be > 0")
        self._starts = [float(t) for t, _ in steps]
        self._rates = [float(r) * 125.0 for _, r in steps]  # kbit/s -> bytes/s
        self._cum = [0.0]
        for i in range(1, len(steps)):
            span = self._starts[i] - self._starts[i - 1]
            self._cum.append(self._cum[-1] + self._rates[i - 1] * span)

    def served(self, t: float) -> float:
        """Bytes the link could have served in ``[0, t]``."""
        i = bisect_right(self._starts, t) - 1
        if i < 0:
            return 0.0
        return self._cum[i] + self._rates[i] * (t - self._starts[i])

    def time_of(self, position: float) -> float:
        """When the link has served ``position`` bytes since it started."""
        i = max(bisect_left(self._cum, position) - 1, 0)
        while self._rates[i] <= 0:  # only before a later positive rate (checked above)
            i += 1
        return self._starts[i] + (position - self._cum[i]) / self._rates[i]

    def rate_kbps(self, t: float) -> float:
        """The rate in force at ``t``."""
        i = max(bisect_right(self._starts, t) - 1, 0)
        return self._rates[i] / 125.0


class TraceCapacity:
    """Mahimahi trace capacity: ``timestamps_ms`` of 1,500-byte opportunities, looping.

    Timestamps are whole milliseconds, so a table of opportunities per elapsed millisecond
    answers :meth:`served` by indexing (no search): it runs for every packet.
    """

    __slots__ = ("_bytes", "_loop_bytes", "_n", "_period", "_period_ms", "_times")

    def __init__(self, timestamps_ms: Sequence[int]) -> None:
        if not timestamps_ms or timestamps_ms[-1] <= 0:
            raise ValueError("a Mahimahi trace needs at least one timestamp > 0")
        self._times = [ms / 1000.0 for ms in timestamps_ms]
        self._n = len(self._times)
        self._period_ms = int(timestamps_ms[-1])
        self._period = self._period_ms / 1000.0
        self._loop_bytes = self._n * MTU_BYTES
        count = [0] * (self._period_ms + 1)  # opportunities at or before each millisecond
        for ms in timestamps_ms:
            count[ms] += 1
        total = 0
        for ms, here in enumerate(count):
            total += here
            count[ms] = total * MTU_BYTES
        self._bytes = count

    def served(self, t: float) -> float:
        """Bytes the link could have served in ``[0, t]`` (``t`` >= 0)."""
        loops, ms = divmod(int(t * 1000.0), self._period_ms)
        return loops * self._loop_bytes + self._bytes[ms]

    def time_of(self, position: float) -> float:
        """When the opportunity that completes byte ``position`` comes (positions are whole)."""
        loops, i = divmod((int(position) - 1) // MTU_BYTES, self._n)
        return loops * self._period + self._times[i]

    def rate_kbps(self, t: float) -> float:
        """The average rate over the second before ``t`` (one opportunity is a spike)."""
        start = max(t - 1.0, 0.0)
        span = t - start
        if span <= 0:
            return self.mean_kbps
        return (self.served(t) - self.served(start)) * 8 / 1000.0 / span

    @property
    def mean_kbps(self) -> float:
        """The trace's average rate over one period."""
        return self._n * MTU_BYTES * 8 / 1000.0 / self._period


def read_mahimahi(path: str | Path | Iterable[str]) -> tuple[int, ...]:
    """Timestamps (ms) of a Mahimahi trace file (or of its lines); blank lines are skipped."""
    lines = Path(path).read_text().splitlines() if isinstance(path, (str, Path)) else path
    stamps: list[int] = []
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text:
            continue
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"Mahimahi trace line {number}: {text!r} is not an integer") from None
        if value < 0 or (stamps and value < stamps[-1]):
            raise ValueError(f"Mahimahi trace line {number}: timestamps must not decrease")
        stamps.append(value)
    if not stamps or stamps[-1] <= 0:
        raise ValueError("a Mahimahi trace needs at least one timestamp > 0")
    return tuple(stamps)
