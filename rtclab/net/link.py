"""An impaired link as a pure model: delay, jitter, random and burst loss, a capacity (fixed,
scheduled or a Mahimahi trace) with a tail-drop queue, and up or down.

:meth:`LinkState.admit` takes the send time and the packet size and returns when the packet
leaves the far end, or ``None`` when it is lost. No clock and no sockets: the emulated
network schedules deliveries, the NFQUEUE worker gives verdicts, tests call it with made-up
times. Randomness comes from a seeded :class:`random.Random`, so a seed and a packet
sequence give the same losses.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from itertools import pairwise
from pathlib import Path
from typing import Any

from .capacity import ScheduleCapacity, TraceCapacity, read_mahimahi

__all__ = ["LINK_COLUMNS", "Link", "LinkState", "link_columns"]

#: What the link does now, as columns of the samples frame (see :func:`link_columns`).
LINK_COLUMNS = ("capacity_kbps", "queue_delay_ms")


@dataclass(frozen=True)
class Link:
    """One direction's impairment (a host's access link applies it both ways).

    ``loss`` is the long-run fraction of packets lost. With ``burst`` > 1 losses come in
    bursts of that mean length (a Gilbert-Elliott channel: a "bad" state drops everything,
    entered and left so that the long-run loss is still ``loss``); ``burst=1`` is independent
    random loss. ``jitter_ms`` is the standard deviation of a normal variation added to the
    delay; packets keep their order unless ``reorder`` (like a FIFO queue, not like netem).

    Capacity: ``rate_kbps`` serializes packets at that bit rate; ``schedule``
    (``[(t_s, rate_kbps), ...]``, times from the link's start) changes it over time, with
    ``rate_kbps`` in force before the first step; ``trace`` (Mahimahi millisecond
    timestamps, see :meth:`from_mahimahi`) replaces both. Packets wait in a FIFO queue of
    ``queue_bytes``, or of ``queue_ms`` of waiting when given (then ``queue_bytes`` is not
    used); a packet that does not fit is dropped (tail drop). ``up=False`` drops everything.
    """

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss: float = 0.0
    burst: float = 1.0
    rate_kbps: float | None = None
    queue_bytes: int = 64_000
    reorder: bool = False
    queue_ms: float | None = None
    schedule: tuple[tuple[float, float], ...] | None = None
    trace: tuple[int, ...] | None = None
    up: bool = True

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
        if self.queue_ms is not None and self.queue_ms <= 0:
            raise ValueError("queue_ms must be positive (or None to limit by queue_bytes)")
        if self.schedule is not None:  # lists from JSON become tuples (hashable, frozen)
            steps = tuple((float(t), float(r)) for t, r in self.schedule)
            if any(b[0] <= a[0] for a, b in pairwise(steps)):
                raise ValueError("schedule times must increase")
            if any(r < 0 for _, r in steps) or (steps and steps[0][0] < 0):
                raise ValueError("schedule times and rates must be >= 0")
            if steps and steps[0][0] > 0 and self.rate_kbps is None:
                raise ValueError("a schedule that starts after t=0 needs rate_kbps before it")
            object.__setattr__(self, "schedule", steps or None)
        if self.trace is not None:
            object.__setattr__(self, "trace", read_mahimahi(str(x) for x in self.trace))
        self.capacity()  # validates a schedule or trace once, here

    @classmethod
    def from_mahimahi(cls, path: str | Path, **fields: Any) -> Link:
        """A link whose capacity follows a Mahimahi trace file (it loops)."""
        return cls(trace=read_mahimahi(path), **fields)

    @property
    def is_clean(self) -> bool:
        return (
            self.delay_ms == 0
            and self.jitter_ms == 0
            and self.loss == 0
            and self.rate_kbps is None
            and self.schedule is None
            and self.trace is None
            and self.up
        )

    def capacity(self) -> ScheduleCapacity | TraceCapacity | None:
        """The varying capacity as a service curve (``None``: fixed ``rate_kbps`` or none)."""
        if self.trace is not None:
            return TraceCapacity(self.trace)
        if self.schedule is not None:
            steps: Sequence[tuple[float, float]] = self.schedule
            if steps[0][0] > 0:
                assert self.rate_kbps is not None
                steps = ((0.0, self.rate_kbps), *steps)
            return ScheduleCapacity(steps)
        return None

    def replace(self, **changes: Any) -> Link:
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """The fields as JSON values (how a link travels to the NFQUEUE worker)."""
        return asdict(self)


def _never(position: float) -> float:
    raise AssertionError("no varying capacity")


class LinkState:
    """A :class:`Link` in use: its random stream, its queue and burst state, its counters.

    A scheduled or trace capacity counts from ``start`` (or the first packet's time).
    :meth:`set_link` changes the link live: packets already admitted keep their times, the
    queue and the random stream carry on, and a new schedule or trace starts then.
    """

    def __init__(self, link: Link, seed: int | str | None = 0, *, start: float | None = None):
        self._rng = random.Random(seed)
        self._bad = False
        self._busy_until = 0.0  # when the queue drains (seconds)
        self._last_exit = 0.0
        self.sent = 0
        self.lost = 0
        self.queue_drops = 0
        self.down_drops = 0
        self.served_bytes = 0  # through a limited capacity (what a rate measurement sees)
        self._configure(link, start)

    def _configure(self, link: Link, start: float | None) -> None:
        self.link = link
        self._capacity = capacity = link.capacity()
        self._served = capacity.served if capacity is not None else None
        self._time_of = capacity.time_of if capacity is not None else _never
        self._epoch = start
        self._tail = 0.0  # service position (bytes since the epoch) of the queue's end
        if self._capacity is not None and start is not None:
            self._tail = self._capacity.served(max(self._busy_until - start, 0.0))
        self._limit_s = link.queue_ms / 1000.0 if link.queue_ms is not None else None
        if link.burst > 1.0 and link.loss > 0:
            self._leave_bad = 1.0 / link.burst
            self._enter_bad = link.loss * self._leave_bad / (1.0 - link.loss)
        else:
            self._leave_bad = self._enter_bad = 0.0

    def set_link(self, link: Link, now: float | None) -> None:
        """Use ``link`` for packets sent from ``now`` on (a scheduled capacity restarts then,
        or with the next packet if ``now`` is None)."""
        self._configure(link, now)

    def _lost(self) -> bool:
        link = self.link
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
        if not link.up:
            self.down_drops += 1
            return None
        depart = now
        served = self._served
        if served is not None:  # a schedule or a trace (inlined: this runs per packet)
            epoch = self._epoch
            if epoch is None:
                epoch = self._epoch = now
            t = now - epoch
            busy = self._busy_until - epoch
            limit = self._limit_s
            if t >= busy:  # idle: credits nobody used are gone
                if limit is None and size > link.queue_bytes:
                    self.queue_drops += 1
                    return None
                position = served(t)
            elif (
                busy - t > limit
                if limit is not None
                else (self._tail - served(t) + size > link.queue_bytes)
            ):
                self.queue_drops += 1
                return None
            else:
                position = self._tail
            self._tail = position = position + size
            depart = self._busy_until = epoch + self._time_of(position)
            self.served_bytes += size
        elif link.rate_kbps is not None:
            rate = link.rate_kbps * 125.0  # bytes per second
            wait = self._busy_until - now
            if wait < 0.0:
                wait = 0.0
            limit = self._limit_s
            if wait > limit if limit is not None else wait * rate + size > link.queue_bytes:
                self.queue_drops += 1
                return None
            self._busy_until = depart = now + wait + size / rate
            self.served_bytes += size
        if link.loss > 0 and self._lost():
            self.lost += 1
            return None
        arrive = depart + link.delay_ms / 1000.0
        if link.jitter_ms > 0:
            arrive += self._rng.gauss(0.0, link.jitter_ms) / 1000.0
            if arrive < depart:
                arrive = depart
        if not link.reorder:
            if arrive < self._last_exit:
                arrive = self._last_exit
            self._last_exit = arrive
        return arrive

    # --- what the link is doing now (for stats rows and widgets) -----------------------

    def capacity_kbps(self, now: float) -> float | None:
        """The capacity in force at ``now`` (a trace: its rate over the last second);
        ``None`` when unlimited, 0 when the link is down."""
        if not self.link.up:
            return 0.0
        if self._capacity is not None:
            epoch = now if self._epoch is None else self._epoch
            return self._capacity.rate_kbps(max(now - epoch, 0.0))
        return self.link.rate_kbps

    def queue_delay_ms(self, now: float) -> float:
        """How long a packet sent at ``now`` would wait in the queue (ms)."""
        return max(self._busy_until - now, 0.0) * 1000.0

    def status(self, now: float) -> dict[str, float | None]:
        """``capacity_kbps`` and ``queue_delay_ms`` now (the samples frame's link columns)."""
        return {
            "capacity_kbps": self.capacity_kbps(now),
            "queue_delay_ms": self.queue_delay_ms(now),
        }


def link_columns(status: Mapping[str, Any] | None, direction: str) -> dict[str, Any]:
    """The link columns of a row: an outbound row gets the uplink's status, an inbound row
    the downlink's (``status`` is ``{"up": {...}, "down": {...}}``); none without a link."""
    part = status.get("up" if direction == "outbound" else "down") if status else None
    if not isinstance(part, Mapping):
        return {}
    return {name: part.get(name) for name in LINK_COLUMNS}
