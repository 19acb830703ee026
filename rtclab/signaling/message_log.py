"""The log of signaling messages a lab's server saw, as rows (``lab.messages``)."""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["MESSAGE_COLUMNS", "MessageLog"]

MESSAGE_COLUMNS = ["t", "direction", "who", "type", "from", "to", "room", "summary"]


def _summarize(message: dict[str, Any]) -> str:
    """A one-line gist of a signaling message for the log table (not the whole SDP)."""
    kind = message.get("type")
    if kind in ("offer", "answer"):
        sdp = message.get("sdp")
        text = sdp.get("sdp", "") if isinstance(sdp, dict) else ""
        lines = text.splitlines() if isinstance(text, str) else []
        media = [x.split()[0][2:] for x in lines if x.startswith("m=")]
        candidates = sum(1 for x in lines if x.startswith("a=candidate:"))
        return f"{len(text)} B SDP, m={'/'.join(media)}, {candidates} candidates"
    if kind == "ice-candidate":
        candidate = message.get("candidate")
        if not isinstance(candidate, dict) or not candidate.get("candidate"):
            return "end-of-candidates"
        bits = str(candidate["candidate"]).split()
        return " ".join(bits[4:8]) if len(bits) >= 8 else str(candidate["candidate"])[:60]
    if kind == "room-joined":
        return f"peers={message.get('peers')}"
    if kind in ("peer-joined", "peer-left"):
        return str(message.get("peerId"))
    if kind == "stats":
        rows = message.get("rows")
        return f"{len(rows) if isinstance(rows, list) else 0} rows"
    if kind == "error" or kind == "invalid":
        return f"{message.get('code')}: {message.get('message', '')}"
    return ""


class MessageLog:
    """Keeps the last ``maxlen`` signaling messages the server saw, as rows."""

    def __init__(self, maxlen: int) -> None:
        self.rows: deque[dict[str, Any]] = deque(maxlen=maxlen)

    def __call__(self, direction: str, who: str, message: dict[str, Any]) -> None:
        self.rows.append(
            {
                "t": time.time(),
                "direction": direction,
                "who": who,
                "type": message.get("type"),
                "from": message.get("from") if direction == "out" else who,
                "to": who if direction == "out" else message.get("to"),
                "room": message.get("roomId"),
                "summary": _summarize(message),
            }
        )

    def frame(self) -> pd.DataFrame:
        import pandas as pd  # only when asked: the stand-alone server never loads pandas

        frame: pd.DataFrame = pd.DataFrame(list(self.rows), columns=MESSAGE_COLUMNS)
        frame["t"] = pd.to_datetime(frame["t"], unit="s", utc=True)
        return frame
