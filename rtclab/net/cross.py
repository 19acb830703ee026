"""Cross traffic that shares a link's queue with the peers' packets: constant rate, on/off,
and a greedy AIMD flow that behaves like TCP Reno.

Each flow is a pure model: :meth:`CrossFlow.step` is called at a time, pushes the packets due
by then through the link's :class:`~rtclab.net.link.LinkState` (they take queue space and
capacity, and are never delivered anywhere) and returns when it wants to be called next.
:func:`simulate` runs flows on made-up time for tests; :class:`CrossTraffic` runs one on the
running loop against a live link, e.g. ``CrossTraffic(AimdFlow(), host.down)``.
"""

from __future__ import annotations

import asyncio
import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from .link import LinkState

__all__ = ["AimdFlow", "ConstantRate", "CrossFlow", "CrossTraffic", "OnOff", "simulate"]


@dataclass
class CrossFlow:
    """What every flow counts; subclasses decide what to send when."""

    size: int = 1200
    sent_bytes: int = field(default=0, init=False)
    delivered_bytes: int = field(default=0, init=False)
    lost_packets: int = field(default=0, init=False)

    def step(self, now: float, link: LinkState) -> float | None:
        """Send what is due at ``now`` through ``link``; when to be called next (None: done)."""
        raise NotImplementedError

    def _send(self, now: float, link: LinkState) -> float | None:
        self.sent_bytes += self.size
        arrive = link.admit(now, self.size)
        if arrive is None:
            self.lost_packets += 1
        else:
            self.delivered_bytes += self.size
        return arrive


@dataclass
class ConstantRate(CrossFlow):
    """A steady stream of ``rate_kbps`` (e.g. another application's UDP video)."""

    rate_kbps: float = 500.0
    _next: float | None = field(default=None, init=False)

    @property
    def gap(self) -> float:
        return self.size * 8 / (self.rate_kbps * 1000.0)

    def _on(self, now: float) -> bool:
        return True

    def step(self, now: float, link: LinkState) -> float | None:
        if self._next is None:
            self._next = now
        while self._next <= now:  # catch up if the caller was late: the rate stays exact
            if self._on(self._next):
                self._send(now, link)
            self._next += self.gap
        return self._next


@dataclass
class OnOff(ConstantRate):
    """``rate_kbps`` for ``on_s``, silence for ``off_s``, repeating (bursty cross traffic)."""

    on_s: float = 1.0
    off_s: float = 1.0
    _start: float | None = field(default=None, init=False)

    def _on(self, now: float) -> bool:
        if self._start is None:
            self._start = now
        return (now - self._start) % (self.on_s + self.off_s) < self.on_s


@dataclass
class AimdFlow(CrossFlow):
    """A greedy window-based flow like TCP Reno: slow start, +1 packet per round trip, halve
    on loss (once per round trip). ``rtt_ms`` is the round trip outside this link (the ACK
    path is not impaired); a loss is noticed one round trip after the packet was sent.
    ``max_window`` caps the window (a receive window), in packets."""

    size: int = 1500
    rtt_ms: float = 40.0
    max_window: int = 10_000
    cwnd: float = field(default=2.0, init=False)
    ssthresh: float = field(default=math.inf, init=False)
    inflight: int = field(default=0, init=False)
    _pending: list[tuple[float, int, bool]] = field(default_factory=list, init=False)
    _order: int = field(default=0, init=False)
    _last_cut: float = field(default=-math.inf, init=False)
    _smoothed_rtt: float | None = field(default=None, init=False)

    def step(self, now: float, link: LinkState) -> float | None:
        base = self.rtt_ms / 1000.0
        while self._pending and self._pending[0][0] <= now:
            _, _, acked = heapq.heappop(self._pending)
            self.inflight -= 1
            if acked:
                self.cwnd += 1.0 if self.cwnd < self.ssthresh else 1.0 / self.cwnd
            elif now - self._last_cut >= (self._smoothed_rtt or base):
                self.ssthresh = max(self.cwnd / 2.0, 2.0)
                self.cwnd = self.ssthresh
                self._last_cut = now
        self.cwnd = min(self.cwnd, float(self.max_window))
        while self.inflight < int(self.cwnd):
            arrive = self._send(now, link)
            self.inflight += 1
            self._order += 1
            if arrive is None:
                due, acked = now + (self._smoothed_rtt or base), False
            else:
                due, acked = arrive + base, True
                rtt = due - now
                self._smoothed_rtt = (
                    rtt if self._smoothed_rtt is None else 0.875 * self._smoothed_rtt + 0.125 * rtt
                )
            heapq.heappush(self._pending, (due, self._order, acked))
        return self._pending[0][0] if self._pending else None


def simulate(
    link: LinkState, flows: Sequence[CrossFlow], until: float, *, start: float = 0.0
) -> None:
    """Run ``flows`` on ``link`` from ``start`` to ``until`` (seconds), each at its own times."""
    due = [(start, i) for i in range(len(flows))]
    heapq.heapify(due)
    while due and due[0][0] < until:
        now, i = heapq.heappop(due)
        wake = flows[i].step(now, link)
        if wake is not None:
            heapq.heappush(due, (max(wake, now), i))


class CrossTraffic:
    """One flow running on the running loop against a live link (e.g. an emulated host's
    ``host.down``: the traffic competes with what the host receives). :meth:`stop` ends it."""

    def __init__(self, flow: CrossFlow, link: LinkState) -> None:
        self.flow = flow
        self._link = link
        self._loop = loop = asyncio.get_running_loop()
        self._handle: asyncio.TimerHandle | asyncio.Handle | None = loop.call_soon(self._tick)
        self.started = loop.time()

    def _tick(self) -> None:
        now = self._loop.time()
        wake = self.flow.step(now, self._link)
        self._handle = None if wake is None else self._loop.call_at(max(wake, now), self._tick)

    @property
    def running(self) -> bool:
        return self._handle is not None

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def delivered_kbps(self) -> float:
        """The flow's average delivered rate since it started."""
        span = self._loop.time() - self.started
        return self.flow.delivered_bytes * 8 / 1000.0 / span if span > 0 else 0.0
