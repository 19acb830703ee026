"""The nfnetlink_queue wire format: build config and verdict requests, parse what the kernel
sends (packets, ACKs, errors). Pure bytes in and out, no socket: unit-tested without root.

Netlink headers and attribute headers are in host byte order; nfnetlink's own header and
NFQUEUE's attribute payloads are big-endian.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = [
    "NF_ACCEPT",
    "NF_DROP",
    "NetlinkMessage",
    "NfqueueError",
    "QueuedPacket",
    "config_message",
    "parse_messages",
    "parse_packet",
    "verdict_message",
]

NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG = 0, 1, 2
NFQA_CFG_CMD, NFQA_CFG_PARAMS, NFQA_CFG_QUEUE_MAXLEN = 1, 2, 3
NFQNL_CFG_CMD_BIND, NFQNL_CFG_CMD_UNBIND = 1, 2
NFQNL_COPY_PACKET = 2
NFQA_PACKET_HDR, NFQA_VERDICT_HDR, NFQA_PAYLOAD, NFQA_CAP_LEN = 1, 2, 10, 13
NF_DROP, NF_ACCEPT = 0, 1
NLMSG_NOOP, NLMSG_ERROR, NLMSG_DONE = 1, 2, 3
NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4
NLA_TYPE_MASK = 0x3FFF  # strips NLA_F_NESTED and NLA_F_NET_BYTEORDER

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, portid (host byte order)
_NFGENMSG = struct.Struct(">BBH")  # family, version, res_id (the queue number)
_NLATTR = struct.Struct("=HH")  # len, type


class NfqueueError(RuntimeError):
    """NFQUEUE impairment cannot be set up (not root, no iptables, queue busy, ...)."""


def _align(n: int) -> int:
    return (n + 3) & ~3


def _attr(kind: int, data: bytes) -> bytes:
    length = _NLATTR.size + len(data)
    return _NLATTR.pack(length, kind) + data + b"\0" * (_align(length) - length)


def _attrs(data: bytes) -> dict[int, bytes]:
    found: dict[int, bytes] = {}
    offset = 0
    while offset + _NLATTR.size <= len(data):
        length, kind = _NLATTR.unpack_from(data, offset)
        if length < _NLATTR.size or offset + length > len(data):
            break
        found[kind & NLA_TYPE_MASK] = data[offset + _NLATTR.size : offset + length]
        offset += _align(length)
    return found


def _message(
    msg_type: int, queue: int, attrs: bytes, *, flags: int, seq: int, family: int = 0
) -> bytes:
    body = _NFGENMSG.pack(family, 0, queue) + attrs
    kind = (NFNL_SUBSYS_QUEUE << 8) | msg_type
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, flags, seq, 0) + body


def config_message(
    queue: int,
    *,
    cmd: int | None = None,
    copy_range: int | None = None,
    maxlen: int | None = None,
    seq: int = 0,
) -> bytes:
    """An NFQNL_MSG_CONFIG request (with ACK, so errors such as EBUSY come back to us)."""
    attrs = b""
    if cmd is not None:
        attrs += _attr(NFQA_CFG_CMD, struct.pack(">BBH", cmd, 0, 0))
    if copy_range is not None:
        attrs += _attr(NFQA_CFG_PARAMS, struct.pack(">IB", copy_range, NFQNL_COPY_PACKET))
    if maxlen is not None:
        attrs += _attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack(">I", maxlen))
    return _message(NFQNL_MSG_CONFIG, queue, attrs, flags=NLM_F_REQUEST | NLM_F_ACK, seq=seq)


def verdict_message(queue: int, packet_id: int, verdict: int, seq: int = 0) -> bytes:
    """An NFQNL_MSG_VERDICT for one packet; no ACK, a verdict per packet must stay cheap."""
    attrs = _attr(NFQA_VERDICT_HDR, struct.pack(">II", verdict, packet_id))
    return _message(NFQNL_MSG_VERDICT, queue, attrs, flags=NLM_F_REQUEST, seq=seq)


@dataclass(frozen=True)
class NetlinkMessage:
    kind: int
    flags: int
    seq: int
    body: bytes

    @property
    def error(self) -> int | None:
        """For NLMSG_ERROR: 0 for an ACK, else a positive errno; None for other messages."""
        if self.kind != NLMSG_ERROR or len(self.body) < 4:
            return None
        code: int = struct.unpack_from("=i", self.body)[0]
        return -code


def parse_messages(data: bytes) -> Iterator[NetlinkMessage]:
    """Split one netlink datagram into its messages (4-byte aligned, host byte order)."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, flags, seq, _ = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            break
        yield NetlinkMessage(kind, flags, seq, data[offset + _NLMSGHDR.size : offset + length])
        offset += _align(length)


@dataclass(frozen=True)
class QueuedPacket:
    """One packet the kernel holds for us; ``size`` is the whole IP packet, not the copy."""

    queue: int
    packet_id: int
    hw_protocol: int
    hook: int
    size: int
    payload: bytes


def parse_packet(message: NetlinkMessage) -> QueuedPacket | None:
    """The packet in an NFQNL_MSG_PACKET message, or None for any other message."""
    if message.kind != (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
        return None
    if len(message.body) < _NFGENMSG.size:
        return None
    _, _, queue = _NFGENMSG.unpack_from(message.body)
    attrs = _attrs(message.body[_NFGENMSG.size :])
    header = attrs.get(NFQA_PACKET_HDR)
    if header is None or len(header) < 7:
        return None
    packet_id, hw_protocol, hook = struct.unpack_from(">IHB", header)
    payload = attrs.get(NFQA_PAYLOAD, b"")
    cap_len = attrs.get(NFQA_CAP_LEN)
    size = struct.unpack(">I", cap_len[:4])[0] if cap_len else len(payload)
    return QueuedPacket(queue, packet_id, hw_protocol, hook, size, payload)
