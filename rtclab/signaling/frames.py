"""WebSocket frame splitting and framing for the relay path (pure, no I/O).

websockets' frame parser (a generator stepping through ``read_exact``, a ``Frame`` and an
``Opcode`` per frame) was a third of the relay path's CPU. :func:`split_frames` takes only
the common case, complete, unfragmented, masked data frames within the size limit, and
hands every other frame back untouched, so that websockets' own state machine sees it
whole, stays at a frame boundary and keeps enforcing the protocol: control frames,
fragments, close, and the errors (unmasked, oversized, reserved bits) that end a
connection. :func:`text_header` frames what the server sends (RFC 6455 §5.2).
"""

from __future__ import annotations

import struct
from typing import Final, TypeAlias

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - websockets built without its C extension
    from websockets.utils import apply_mask

__all__ = ["RawFrame", "Split", "split_frames", "text_header"]

_HEAD16: Final = struct.Struct("!BBH").pack
_HEAD64: Final = struct.Struct("!BBQ").pack


class RawFrame(bytes):
    """A whole frame, header and mask included, for websockets' parser to handle."""

    __slots__ = ()


Split: TypeAlias = tuple[list[bytes], bytes, bool, bool]
"""What :func:`split_frames` made of a read: ``(items, rest, fragmented, stopped)``.

- ``items``, in stream order: unmasked payloads of whole text/binary messages (``bytes``)
  and :class:`RawFrame` s for websockets;
- ``rest``: bytes not consumed: the start of an incomplete frame, or (when ``stopped``)
  everything from the first frame websockets must refuse;
- ``fragmented``: a fragmented message is in progress after these frames (pass it to the
  next call);
- ``stopped``: ``rest`` holds a frame that ends splitting: feed it and all later data to
  websockets, which refuses it (1002 / 1009) from its header alone, before any payload is
  buffered.

A plain tuple, not a named one: it is built once per TCP read on the relay path.
"""


def split_frames(data: bytes, limit: int, fragmented: bool = False) -> Split:
    """Cut client frames out of ``data`` (what is left of the last read, then this one).

    ``limit`` is the largest message accepted; ``fragmented`` whether a fragmented message
    was in progress. Data frames go out as payloads only when they are a whole message
    (FIN set, text or binary opcode, no fragmented message in progress); everything else a
    correct client may send goes out as a :class:`RawFrame`.
    """
    n = len(data)
    pos = 0
    items: list[bytes] = []
    append = items.append
    while pos + 2 <= n:
        b0 = data[pos]
        b1 = data[pos + 1]
        length = b1 & 0x7F
        if length < 126:
            start = pos + 6
        elif length == 126:
            if pos + 4 > n:
                break
            length = (data[pos + 2] << 8) | data[pos + 3]
            start = pos + 8
        else:
            if pos + 10 > n:
                break
            length = int.from_bytes(data[pos + 2 : pos + 10], "big")
            start = pos + 14
        if not b1 & 0x80 or length > limit:  # unmasked, or oversized: websockets refuses it
            return items, data[pos:], fragmented, True
        end = start + length
        if end > n:
            break
        if (b0 == 0x81 or b0 == 0x82) and not fragmented:
            # slicing copies the payload once, which costs less than a memoryview would
            append(apply_mask(data[start:end], data[start - 4 : start]))
        else:
            opcode = b0 & 0x0F
            if opcode == 1 or opcode == 2:
                fragmented = not b0 & 0x80
            elif opcode == 0 and b0 & 0x80:
                fragmented = False
            append(RawFrame(data[pos:end]))
        pos = end
    return items, data[pos:] if pos else data, fragmented, False


def text_header(length: int) -> bytes:
    """Header of an unmasked, unfragmented, uncompressed text frame of ``length`` bytes.

    Valid with permessage-deflate too: RSV1 clear marks a message as not compressed.
    """
    if length < 126:
        return bytes((0x81, length))
    if length < 65536:
        return _HEAD16(0x81, 126, length)
    return _HEAD64(0x81, 127, length)
