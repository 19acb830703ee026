"""An impaired link as a pure model: delay, jitter, random and burst loss, rate with a queue.

:meth:`LinkState.admit` takes the send time and the packet size and returns when the packet
leaves the far end, or ``None`` when it is lost. No clock and no sockets: the emulated
network schedules deliveries, tests call it with made-up times. Randomness comes from a
seeded :class:`random.Random`, so a seed and a packet sequence give the same losses.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Any

__all__ = ["Link", "LinkState"]


@dataclass(frozen=True)
class Link:
    """One direction's impairment (a host's access link applies it both ways).

    ``loss`` is the long-run fraction of packets lost. With ``burst`` > 1 losses come in
    bursts of that mean length (a Gilbert-Elliott channel: a "bad" state drops everything,
    entered and left so that the long-run loss is still ``loss``); ``burst=1`` is independent
    random loss. ``jitter_ms`` is the standard deviation of a normal variation added to the
    delay; packets keep their order unless ``reorder`` (like a FIFO queue, not like netem).
    ``rate_kbps`` serializes packets at that bit rate behind a queue of ``queue_bytes``;
    a packet that does not fit is dropped (tail drop).
    """

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss: float = 0.0
    burst: float = 1.0
    rate_kbps: float | None = None
    queue_bytes: int = 64_000
    reorder: bool = False

    def __post_init__(self) -> None:
        if self.delay_ms < 0 or self.jitter_ms < 0:
            raise ValueError("delay_ms and jitter_ms must be >= 0")
        if not 0.0 <= self.loss < 1.0:
            raise ValueError("loss is a fraction in [0, 1)")
        if self.burst < 1.0:
            raise ValueError("burst is a mean burst length in packets (>= 1)")
        if self.rate_kbps is not None and self.rate_kbps <= 0:
            raise ValueError("rate_kbps must be positive (or None for unlimited)")
        if self.queue_bytes <= 0:
            raise ValueError("queue_bytes must be positive")

    @property
    def is_clean(self) -> bool:
        return (
            self.delay_ms == 0 and self.jitter_ms == 0 and self.loss == 0 and self.rate_kbps is None
        )

    def replace(self, **changes: Any) -> Link:
        return replace(self, **changes)


class LinkState:
    """A :class:`Link` in use: its random stream, its queue and burst state, its counters."""

    def __init__(self, link: Link, seed: int | str | None = 0) -> None:
        self.link = link
        self._rng = random.Random(seed)
        self._bad = False
        self._busy_until = 0.0  # when the rate limiter's queue drains (seconds)
        self._last_exit = 0.0
        self.sent = 0
        self.lost = 0
        self.queue_drops = 0
        if link.burst > 1.0 and link.loss > 0:
            self._leave_bad = 1.0 / link.burst
            self._enter_bad = link.loss * self._leave_bad / (1.0 - link.loss)
        else:
            self._leave_bad = self._enter_bad = 0.0

    def _lost(self) -> bool:
        link = self.link
        if link.loss <= 0:
            return False
        if link.burst <= 1.0:
            return self._rng.random() < link.loss
        if self._bad:
            if self._rng.random() < self._leave_bad:
                self._bad = False
        elif self._rng.random() < self._enter_bad:
            self._bad = True
        return self._bad

    def admit(self, now: float, size: int) -> float | None:
        """When a ``size``-byte packet sent at ``now`` (seconds) arrives, or ``None`` if lost."""
        link = self.link
        self.sent += 1
        depart = now
        if link.rate_kbps is not None:
            rate = link.rate_kbps * 1000.0 / 8.0  # bytes per second
            backlog = max(0.0, self._busy_until - now) * rate
            if backlog + size > link.queue_bytes:
                self.queue_drops += 1
                return None
            self._busy_until = max(now, self._busy_until) + size / rate
            depart = self._busy_until
        if self._lost():
            self.lost += 1
            return None
        delay = link.delay_ms
        if link.jitter_ms > 0:
            delay = max(0.0, self._rng.gauss(delay, link.jitter_ms))
        arrive = depart + delay / 1000.0
        if not link.reorder:
            arrive = max(arrive, self._last_exit)
            self._last_exit = arrive
        return arrive
