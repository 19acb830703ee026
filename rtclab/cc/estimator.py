"""The receiver-side bandwidth estimator protocol, and when its estimate goes out as REMB.

An estimator sees every RTP packet a video receiver gets (:class:`ReceivedPacket`) and is
asked, after each one, what it thinks the path carries (:meth:`BandwidthEstimator.estimate`,
bits per second, or ``None`` while it does not know yet). :class:`RembFeedback` decides when
an answer is worth sending to the sender as REMB and remembers what it sent; it does no I/O,
so a test feeds it made-up packets.
"""

from __future__ import annotations

import importlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import KW_ONLY, InitVar, dataclass, field
from typing import Protocol, runtime_checkable

__all__ = [
    "ABS_SEND_TIME_UNITS_PER_S",
    "BandwidthEstimator",
    "EstimatorFactory",
    "ReceivedPacket",
    "RembFeedback",
    "estimator_name",
    "load_estimator",
]

#: abs-send-time is 6.18 fixed-point seconds: 2**18 units per second, wrapping every 64 s.
ABS_SEND_TIME_UNITS_PER_S = 1 << 18


@dataclass(frozen=True, slots=True)
class ReceivedPacket:
    """One RTP packet as the receiver got it: what an estimator may look at."""

    arrival_time_ms: int  # receiver clock (aiortc: ms since the NTP epoch)
    abs_send_time: int | None  # sender clock, the 24-bit abs-send-time header extension
    size: int  # payload + padding bytes (what aiortc's estimator counts)
    sequence_number: int  # RTP sequence number (16 bits, wraps; one space per ssrc)
    ssrc: int  # media or retransmission (RTX) stream

    @property
    def send_time_ms(self) -> float | None:
        """The sender's abs-send-time in ms (wraps every 64 s), or None without the header."""
        if self.abs_send_time is None:
            return None
        return self.abs_send_time * 1000.0 / ABS_SEND_TIME_UNITS_PER_S


@runtime_checkable
class BandwidthEstimator(Protocol):
    """What the receiver asks of an estimator: two methods, any plain class will do.

    ``on_packet`` is called for every RTP packet of one video receiver, in arrival order;
    ``estimate(now_ms)`` right after it, with that packet's arrival time: the bitrate in bits
    per second the sender should aim at, or ``None`` to say nothing (no REMB goes out).
    Both run in the event loop for every packet: keep them cheap and never block.
    """

    def on_packet(self, packet: ReceivedPacket) -> None: ...

    def estimate(self, now_ms: int) -> int | None: ...


#: What ``Peer(estimator=...)`` takes: called once per video receiver for a fresh estimator
#: (an estimator class itself, ``functools.partial(LossBasedAimd, start_bps=...)``, a lambda).
EstimatorFactory = Callable[[], BandwidthEstimator]


def estimator_name(estimator: object) -> str:
    """A short label for plots and events, from an estimator or from its factory: the
    ``name`` attribute if it has one, else the class (or function) name."""
    inner = getattr(estimator, "func", None)  # functools.partial(LossBasedAimd, ...)
    if inner is not None:
        return estimator_name(inner)
    name = getattr(estimator, "name", None)
    if isinstance(name, str) and name:
        return name
    own = getattr(estimator, "__name__", None)  # a class or a function (instances have none)
    return own if isinstance(own, str) else type(estimator).__name__


def load_estimator(spec: str) -> EstimatorFactory:
    """The estimator class named ``"package.module:Name"`` (``rtclab.cc:LossBasedAimd``): how
    a peer in another process (``rtclab peer --estimator``) is told which one to run."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"estimator {spec!r} is not MODULE:NAME, e.g. rtclab.cc:LossBasedAimd")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"estimator {spec!r}: cannot import {module_name!r} ({exc})") from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ValueError(f"estimator {spec!r}: {module_name} has no class or function {attr!r}")
    return factory  # type: ignore[no-any-return]


@dataclass(eq=False)
class RembFeedback:
    """Feeds one receiver's estimator and decides which estimates go out as REMB.

    libwebrtc's rule: an estimate goes out at once when it is at least 3 % below the last
    one sent (congestion must reach the sender fast), otherwise at most every
    ``interval_ms`` (200 ms), so an estimate that creeps up with every packet does not turn
    into a REMB per packet. :attr:`history` keeps ``(unix time, bps)`` of every REMB sent
    (bounded), :attr:`estimate_bps` the last one: what a plot of the receiver's estimate shows.
    """

    estimator: BandwidthEstimator
    _: KW_ONLY
    interval_ms: int = 200
    decrease_ratio: float = 0.97
    keep: InitVar[int] = 10_000
    clock: Callable[[], float] = time.time
    history: deque[tuple[float, int]] = field(init=False)
    ssrcs: dict[int, int] = field(default_factory=dict, init=False)  # stream -> last arrival ms

    def __post_init__(self, keep: int) -> None:
        self.history = deque(maxlen=keep)
        self._last_sent_ms: int | None = None
        self._last_sent_bps: int | None = None

    @property
    def name(self) -> str:
        return estimator_name(self.estimator)

    @property
    def estimate_bps(self) -> int | None:
        """The last estimate sent as REMB (None before the first)."""
        return self._last_sent_bps

    def on_packet(self, packet: ReceivedPacket) -> tuple[int, list[int]] | None:
        """Feed ``packet``; ``(bitrate_bps, ssrcs)`` when a REMB should go out now.

        The ssrcs are every stream seen so far (aiortc's sender obeys a REMB only when its
        own ssrc is listed)."""
        self.ssrcs[packet.ssrc] = packet.arrival_time_ms
        self.estimator.on_packet(packet)
        bps = self.estimator.estimate(packet.arrival_time_ms)
        if bps is None:
            return None
        bps = max(0, int(bps))
        now = packet.arrival_time_ms
        last_ms, last_bps = self._last_sent_ms, self._last_sent_bps
        due = (
            last_ms is None
            or last_bps is None
            or now - last_ms >= self.interval_ms
            or bps < last_bps * self.decrease_ratio
        )
        if not due:
            return None
        self._last_sent_ms, self._last_sent_bps = now, bps
        self.history.append((self.clock(), bps))
        return bps, list(self.ssrcs)
