"""aiortc's own receiver-side estimator behind the :class:`BandwidthEstimator` protocol."""

from __future__ import annotations

from aiortc.rate import RemoteBitrateEstimator

from .estimator import ReceivedPacket

__all__ = ["DelayBasedEstimator"]


class DelayBasedEstimator:
    """aiortc 1.16's default (``aiortc.rate.RemoteBitrateEstimator``), unchanged.

    The delay-based half of Google Congestion Control as libwebrtc's REMB-era receivers ran
    it: a Kalman filter over how much later each group of packets arrives than it was sent
    (abs-send-time), an over-use detector with an adaptive threshold, and AIMD rate control
    that backs off to 85 % of the incoming rate on over-use. It ignores loss. Packets
    without abs-send-time are skipped, as aiortc skips them; the estimate is the last
    bitrate aiortc's estimator produced, so on the same packets it says what aiortc would.
    """

    name = "aiortc default (delay-based)"

    def __init__(self) -> None:
        self.inner = RemoteBitrateEstimator()
        self._estimate: int | None = None

    def on_packet(self, packet: ReceivedPacket) -> None:
        if packet.abs_send_time is None:
            return
        remb = self.inner.add(
            arrival_time_ms=packet.arrival_time_ms,
            abs_send_time=packet.abs_send_time,
            payload_size=packet.size,
            ssrc=packet.ssrc,
        )
        if remb is not None:
            self._estimate = remb[0]

    def estimate(self, now_ms: int) -> int | None:
        return self._estimate

    @property
    def usage(self) -> str:
        """What the over-use detector sees now: ``normal``, ``overusing`` or ``underusing``
        (the queue grows, or drains)."""
        return str(self.inner.detector.state().name.lower())
