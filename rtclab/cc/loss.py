"""A loss-based AIMD estimator: the simplest congestion controller worth comparing."""

from __future__ import annotations

from dataclasses import dataclass

from .estimator import ReceivedPacket

__all__ = ["LossBasedAimd", "LossWindow"]

_SEQ_MOD = 1 << 16


@dataclass
class _Stream:
    highest: int  # extended (unwrapped) highest sequence number seen
    first: int  # extended sequence number the current window started at
    received: int = 0


class LossWindow:
    """Fraction of packets lost per stream over one interval, from RTP sequence numbers.

    Expected = highest sequence number seen − first of the interval + 1, per ssrc (16-bit
    wrap unwrapped); lost = expected − received. A packet older than the interval (late, or
    a retransmission of an earlier loss on the same ssrc) is not counted; one that fills a
    gap of this interval is. Retransmissions on their own RTX stream have sequence numbers
    of their own and are not loss on the media stream.
    """

    def __init__(self) -> None:
        self._streams: dict[int, _Stream] = {}
        self.bytes = 0

    def add(self, packet: ReceivedPacket) -> None:
        self.bytes += packet.size
        seq = packet.sequence_number
        stream = self._streams.get(packet.ssrc)
        if stream is None:
            self._streams[packet.ssrc] = _Stream(highest=seq, first=seq, received=1)
            return
        ahead = (seq - stream.highest) % _SEQ_MOD
        if ahead < _SEQ_MOD // 2:  # newer (or a duplicate of the highest)
            stream.highest += ahead
            stream.received += 1
        elif stream.highest - (_SEQ_MOD - ahead) >= stream.first:  # fills a gap of this one
            stream.received += 1

    def take(self) -> tuple[float | None, int]:
        """``(loss fraction or None if no packet, bytes)`` of the interval; start the next."""
        expected = received = 0
        for stream in self._streams.values():
            expected += stream.highest - stream.first + 1
            received += stream.received
            stream.first, stream.received = stream.highest + 1, 0
        size, self.bytes = self.bytes, 0
        if expected <= 0:
            return None, size
        return max(0.0, (expected - received) / expected), size


class LossBasedAimd:
    """Additive increase, multiplicative decrease on packet loss — the way TCP Reno reacts.

    Every ``interval_ms`` (500) the loss fraction of that interval decides:

    - loss > ``loss_threshold`` (0.02): estimate × ``decrease`` (0.85), never below
      ``min_bps`` (50 kbps);
    - otherwise: estimate + ``increase_bps`` (25 kbps), never above ``headroom`` (1.5) × the
      rate that arrived in the interval, nor above ``max_bps`` (5 Mbps) — an increase the
      sender does not use would otherwise pile up without limit.

    It starts at ``start_bps`` (300 kbps) after the first interval with packets and says
    nothing (``None``) before. Queue delay does not move it: it fills a buffer until that
    drops packets, which is what a delay-based estimator is there to avoid.
    """

    name = "loss-based AIMD"

    def __init__(
        self,
        *,
        start_bps: int = 300_000,
        min_bps: int = 50_000,
        max_bps: int = 5_000_000,
        interval_ms: int = 500,
        loss_threshold: float = 0.02,
        decrease: float = 0.85,
        increase_bps: int = 25_000,
        headroom: float = 1.5,
    ) -> None:
        if not 0 < min_bps <= start_bps <= max_bps:
            raise ValueError("need 0 < min_bps <= start_bps <= max_bps")
        if not 0 < decrease < 1:
            raise ValueError("decrease is a factor in (0, 1)")
        if interval_ms <= 0 or increase_bps < 0 or headroom <= 0:
            raise ValueError("interval_ms and headroom must be positive, increase_bps >= 0")
        self.start_bps, self.min_bps, self.max_bps = start_bps, min_bps, max_bps
        self.interval_ms = interval_ms
        self.loss_threshold = loss_threshold
        self.decrease = decrease
        self.increase_bps = increase_bps
        self.headroom = headroom
        self.window = LossWindow()
        self.bps: int | None = None
        self.last_loss: float | None = None  # loss fraction of the last interval
        self._window_start: int | None = None

    def on_packet(self, packet: ReceivedPacket) -> None:
        if self._window_start is None:
            self._window_start = packet.arrival_time_ms
        self.window.add(packet)

    def estimate(self, now_ms: int) -> int | None:
        start = self._window_start
        if start is not None and now_ms - start >= self.interval_ms:
            self._update(now_ms - start)
            self._window_start = now_ms
        return self.bps

    def _update(self, elapsed_ms: int) -> None:
        loss, size = self.window.take()
        if loss is None:
            return
        self.last_loss = loss
        if self.bps is None:
            self.bps = self.start_bps
        elif loss > self.loss_threshold:
            self.bps = max(self.min_bps, int(self.bps * self.decrease))
        else:
            received_bps = size * 8 * 1000 / elapsed_ms
            ceiling = min(self.max_bps, max(self.min_bps, int(self.headroom * received_bps)))
            if self.bps < ceiling:
                self.bps = min(ceiling, self.bps + self.increase_bps)
