"""The two data channels of a lab peer: ``chat`` (reliable, ordered) and ``cursors`` (unreliable).

Both apply send-side back-pressure on ``bufferedAmount``: over the threshold the reliable
channel *waits* for ``bufferedamountlow`` and the unreliable one *drops* the message. Either
way it is counted in :class:`~rtclab.model.ChannelCounters`, never silent.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from aiortc import RTCDataChannel, RTCPeerConnection

from ..model import ChannelCounters

CHAT = "chat"
CURSORS = "cursors"
#: Sent on ``cursors`` once a second so that silence on a link really means loss; not
#: counted as a message on either side (like SCTP's own heartbeats).
HEARTBEAT = '{"type":"heartbeat"}'
#: The write-up's threshold: stop feeding a channel once 64 KiB wait in its buffer.
DEFAULT_THRESHOLD = 65_536


def create_lab_channels(pc: RTCPeerConnection) -> tuple[RTCDataChannel, RTCDataChannel]:
    """Create ``chat`` (ordered, reliable) and ``cursors`` (``ordered=False, maxRetransmits=0``)."""
    chat = pc.createDataChannel(CHAT, ordered=True)
    cursors = pc.createDataChannel(CURSORS, ordered=False, maxRetransmits=0)
    return chat, cursors


class Channel:
    """An RTCDataChannel with counters and back-pressure; messages are JSON objects."""

    def __init__(
        self,
        channel: RTCDataChannel,
        counters: ChannelCounters,
        *,
        threshold: int = DEFAULT_THRESHOLD,
        on_message: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.channel = channel
        self.counters = counters
        self.threshold = threshold
        self._on_message = on_message
        self._low = asyncio.Event()
        channel.bufferedAmountLowThreshold = threshold // 2
        channel.on("bufferedamountlow", self._low.set)
        channel.on("message", self._handle_message)

    @property
    def label(self) -> str:
        return str(self.channel.label)

    @property
    def reliable(self) -> bool:
        return self.channel.maxRetransmits is None and self.channel.maxPacketLifeTime is None

    @property
    def is_open(self) -> bool:
        return bool(self.channel.readyState == "open")

    def _handle_message(self, data: str | bytes) -> None:
        if data == HEARTBEAT:
            return  # link upkeep, not a message
        self.counters.messages_received += 1
        self.counters.bytes_received += len(data.encode() if isinstance(data, str) else data)
        if self._on_message is None:
            return
        try:
            message = json.loads(data)
        except ValueError:
            message = {"type": "raw", "data": data if isinstance(data, str) else data.hex()}
        if not isinstance(message, dict):
            message = {"type": "raw", "data": message}
        self._on_message(message)

    def _send_now(self, payload: str) -> None:
        self.channel.send(payload)
        self.counters.messages_sent += 1
        self.counters.bytes_sent += len(payload.encode())

    async def _drained(self) -> None:
        while self.channel.bufferedAmount > self.threshold:
            self._low.clear()
            await self._low.wait()

    def send_heartbeat(self) -> None:
        """Send a heartbeat unless the buffer is busy anyway (then data is flowing)."""
        if self.is_open and self.channel.bufferedAmount == 0:
            self.channel.send(HEARTBEAT)

    def try_send(self, message: dict[str, Any]) -> bool:
        """Send unless over the threshold or not open; a refused message is counted as dropped."""
        if not self.is_open or self.channel.bufferedAmount > self.threshold:
            self.counters.messages_dropped += 1
            return False
        self._send_now(json.dumps(message, separators=(",", ":")))
        return True

    async def send(self, message: dict[str, Any], *, timeout: float = 30.0) -> None:
        """Send reliably: wait (counted) while over the threshold instead of growing the buffer."""
        if not self.is_open:
            raise RuntimeError(f"data channel {self.label!r} is {self.channel.readyState}")
        if self.channel.bufferedAmount > self.threshold:
            self.counters.backpressure_waits += 1
            await asyncio.wait_for(self._drained(), timeout)
        self._send_now(json.dumps(message, separators=(",", ":")))
