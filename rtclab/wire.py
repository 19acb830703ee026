"""The row protocol: a peer in another process reports to the lab in JSON lines.

One JSON object per line, the same for an ``rtclab peer`` process (a namespace peer's
stdout) and a lab worker: ``{"rows": [...]}`` (samples rows in the frame's units, without
``t``/``elapsed_s``: the reader stamps them), ``{"peer", "remote", "event", "value"}`` (an
event), ``{"frames": [...]}`` (``frames`` rows, :mod:`rtclab.qoe`). A worker hosts several
peers, so it adds ``"peer"`` to rows and frames lines, and sends its peers'
``{"candidates": [...]}`` and ``{"estimates": [...]}`` rows the same way
(:func:`table_message`). Pure: bytes in, dicts out.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "decode_line",
    "encode_line",
    "event_message",
    "frames_message",
    "json_row",
    "rows_message",
    "table_message",
]


def json_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A samples row as JSON: the reader restamps time, NaN becomes null."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key in ("t", "elapsed_s"):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        out[key] = value
    return out


def _finite(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}


def rows_message(rows: Iterable[Mapping[str, Any]], peer: str | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"rows": [json_row(r) for r in rows]}
    if peer is not None:
        message["peer"] = peer
    return message


def table_message(table: str, rows: Iterable[Mapping[str, Any]], peer: str) -> dict[str, Any]:
    """``{table: rows, "peer": peer}``: one peer's ``frames``, ``candidates`` or
    ``estimates`` rows as they are (times included), NaN as null."""
    return {table: [_finite(r) for r in rows], "peer": peer}


def frames_message(frames: Iterable[Mapping[str, Any]], peer: str) -> dict[str, Any]:
    return table_message("frames", frames, peer)


def event_message(peer: str, remote: str | None, event: str, value: Any) -> dict[str, Any]:
    return {"peer": peer, "remote": remote, "event": event, "value": value}


def encode_line(message: Mapping[str, Any]) -> bytes:
    """One message as a line; values JSON cannot hold (a Path, an enum) become strings.
    ``json.dumps``' own separators: what ``rtclab peer`` always printed, byte for byte."""
    return json.dumps(message, default=str).encode() + b"\n"


def decode_line(line: bytes | str) -> dict[str, Any] | None:
    """The message on ``line``, or ``None`` for anything that is not a JSON object (a stray
    print, a partial line): a reader skips it instead of dying."""
    try:
        message = json.loads(line)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None
