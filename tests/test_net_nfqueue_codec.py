"""The nfnetlink_queue codec: bytes built and parsed without a socket (no root needed)."""

from __future__ import annotations

import socket
import struct

from rtclab.net.nfqueue.codec import (
    NF_ACCEPT,
    config_message,
    parse_messages,
    parse_packet,
    verdict_message,
)


def _nlattr(kind: int, data: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(data), kind) + data
    return raw + b"\0" * (-len(raw) % 4)


def _packet_message(queue: int, packet_id: int, payload: bytes, cap_len: int | None) -> bytes:
    attrs = _nlattr(1 | 0x4000, struct.pack(">IHB", packet_id, 0x0800, 3))  # NET_BYTEORDER
    attrs += _nlattr(10, payload)
    if cap_len is not None:
        attrs += _nlattr(13, struct.pack(">I", cap_len))
    body = struct.pack(">BBH", socket.AF_INET, 0, queue) + attrs
    return struct.pack("=IHHII", 16 + len(body), 0x0300, 0, 0, 1234) + body


def test_parse_packets_from_one_datagram() -> None:
    datagram = _packet_message(3, 42, b"E" * 21, 1228) + _packet_message(3, 43, b"E" * 28, None)
    messages = list(parse_messages(datagram))
    assert len(messages) == 2
    first, second = (parse_packet(m) for m in messages)
    assert first is not None and second is not None
    assert (first.queue, first.packet_id, first.hw_protocol, first.hook) == (3, 42, 0x0800, 3)
    assert first.payload == b"E" * 21  # padding stripped
    assert first.size == 1228  # the whole packet, not the truncated copy
    assert (second.packet_id, second.size) == (43, 28)


def test_non_packets_and_errors() -> None:
    error = struct.pack("=IHHII", 36, 2, 0, 7, 0) + struct.pack("=i", -16) + b"\0" * 16
    (message,) = parse_messages(error)
    assert parse_packet(message) is None
    assert (message.seq, message.error) == (7, 16)  # EBUSY
    ack = struct.pack("=IHHII", 36, 2, 0, 8, 0) + b"\0" * 20
    assert next(parse_messages(ack)).error == 0
    assert list(parse_messages(b"\x01\x02")) == []  # truncated: nothing, no exception


def test_verdict_and_config_bytes() -> None:
    verdict = verdict_message(5, 0x01020304, NF_ACCEPT, seq=9)
    assert verdict == (
        struct.pack("=IHHII", 32, 0x0301, 0x1, 9, 0)
        + bytes([0, 0, 0, 5])  # AF_UNSPEC, version 0, queue 5 big-endian
        + struct.pack("=HH", 12, 2)
        + bytes([0, 0, 0, 1, 1, 2, 3, 4])  # NF_ACCEPT, packet id, both big-endian
    )
    bind = config_message(5, cmd=1, seq=1)
    assert bind[4:8] == struct.pack("=HH", 0x0302, 0x5)  # CONFIG, REQUEST|ACK
    assert bind[20:] == struct.pack("=HH", 8, 1) + bytes([1, 0, 0, 0])
    params = config_message(5, copy_range=128, maxlen=4096)
    assert params[20:] == (
        struct.pack("=HH", 9, 2) + bytes([0, 0, 0, 128, 2]) + b"\0" * 3  # 4-byte aligned
        + struct.pack("=HH", 8, 3) + struct.pack(">I", 4096)
    )  # fmt: skip
