"""Short TCP-like transfers for RFC 8867 5.7: web-page-sized files with idle gaps between.

Pure, like :mod:`rtclab.net.cross`: :class:`ShortTransfers` is a
:class:`~rtclab.net.cross.CrossFlow` whose sources each alternate between an idle gap and
one file sent by an :class:`~rtclab.net.cross.AimdFlow` (slow start, Reno) with a byte
budget; it runs under :class:`~rtclab.net.cross.CrossTraffic` or ``simulate``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from ...net.cross import AimdFlow, CrossFlow
from ...net.link import LinkState
from .cases import ShortTcpSpec

__all__ = ["ShortTransfers"]


@dataclass
class _Transfer(AimdFlow):
    """An AIMD flow that stops once ``budget`` bytes went out (a file download)."""

    budget: int = 40_000

    @property
    def done(self) -> bool:
        return self.sent_bytes >= self.budget

    def _send(self, now: float, link: LinkState) -> float | None:
        if self.done:  # nothing left to send: no packet reaches the link
            return now
        return super()._send(now, link)


@dataclass
class ShortTransfers(CrossFlow):
    """``spec.sources`` sources of short transfers on one link; ``rtt_ms`` is each
    transfer's round trip outside the link. Seeded, so a run repeats."""

    spec: ShortTcpSpec = field(default_factory=ShortTcpSpec)
    rtt_ms: float = 100.0
    seed: int = 0
    transfers: int = field(default=0, init=False)
    _rng: random.Random = field(init=False, repr=False)
    _active: dict[int, _Transfer] = field(default_factory=dict, init=False, repr=False)
    _next_on: dict[int, float] = field(default_factory=dict, init=False, repr=False)
    _start: float | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def _gap(self) -> float:
        return (
            self._rng.expovariate(1.0 / self.spec.mean_off_s) if self.spec.mean_off_s > 0 else 0.0
        )

    def _begin(self, source: int) -> None:
        size = self._rng.uniform(self.spec.min_kb, self.spec.max_kb) * 1000
        self._active[source] = _Transfer(rtt_ms=self.rtt_ms, budget=int(size))
        self.transfers += 1

    def step(self, now: float, link: LinkState) -> float | None:
        if self._start is None:
            self._start = now
            for source in range(self.spec.sources):
                if source < self.spec.initially_on:
                    self._begin(source)
                else:
                    self._next_on[source] = now + self._gap()
        wake = math.inf
        for source in range(self.spec.sources):
            due = self._next_on.get(source)
            if due is not None and due <= now:
                del self._next_on[source]
                self._begin(source)
            transfer = self._active.get(source)
            if transfer is not None:
                before = (transfer.sent_bytes, transfer.delivered_bytes, transfer.lost_packets)
                at = transfer.step(now, link)
                self.sent_bytes += transfer.sent_bytes - before[0]
                self.delivered_bytes += transfer.delivered_bytes - before[1]
                self.lost_packets += transfer.lost_packets - before[2]
                if transfer.done:
                    del self._active[source]
                    self._next_on[source] = now + self._gap()
                elif at is not None:
                    wake = min(wake, at)
            if source in self._next_on:
                wake = min(wake, self._next_on[source])
        return wake if wake < math.inf else None
