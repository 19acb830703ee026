"""The PeerWidget's HTML: per-connection status, what the viewer sees, the chat log.

Pure functions of a peer's state (no widgets, no loop), so a static snapshot and the live
widget say the same thing.
"""

from __future__ import annotations

import html
import time
from typing import TYPE_CHECKING

from ..ice.inspect import selected_candidate_pair
from ..peer.channels import CHAT, CURSORS

if TYPE_CHECKING:
    from ..peer.peer import Peer, RemoteConnection


def connection_html(conn: RemoteConnection) -> str:
    pc = conn.pc
    state = conn.state
    colour = {"connected": "#2ca02c", "failed": "#d62728", "closed": "#777"}.get(state, "#e69500")
    took = f" in {conn.connect_ms:.0f} ms" if conn.connect_ms is not None else ""
    lines = [
        f"signaling <b>{html.escape(str(pc.signalingState))}</b> · "
        f"ICE <b>{html.escape(str(pc.iceConnectionState))}</b> "
        f"(gathering {html.escape(str(pc.iceGatheringState))}) · "
        f"<b style='color:{colour}'>{html.escape(state)}</b>{took}"
    ]
    if conn.failure_reason:
        lines.append(f"<span style='color:#d62728'>{html.escape(conn.failure_reason)}</span>")
    pair = selected_candidate_pair(pc) if state != "closed" else None
    if pair is not None:
        lines.append(f"path <code>{html.escape(pair.describe())}</code>")
    else:
        lines.append("path <i>not selected yet</i>")
    counters = conn.counters

    def kinds(counts: dict[str, int]) -> str:
        return " · ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "0"

    lines.append(
        f"frames sent: {kinds(counters.frames_sent)} | received: {kinds(counters.frames_received)}"
    )
    if counters.frames_tracked:
        lines.append(viewer_html(conn))
    chat, cursors = counters.channels.get(CHAT), counters.channels.get(CURSORS)
    dropped = sum(c.messages_dropped for c in counters.channels.values())
    lines.append(
        f"chat {chat.messages_sent if chat else 0} sent / "
        f"{chat.messages_received if chat else 0} received · "
        f"cursors {cursors.messages_sent if cursors else 0} / "
        f"{cursors.messages_received if cursors else 0} · dropped {dropped}"
    )
    return "<div style='font-size:90%;line-height:1.35'>" + "<br>".join(lines) + "</div>"


def viewer_html(conn: RemoteConnection) -> str:
    """What the viewer of this remote's video sees: latency of the newest tagged frames,
    freezes so far (the W3C rule), frames without a readable tag."""
    counters = conn.counters
    latencies = sorted(conn.recent_latency_ms)
    latency = (
        f"latency <b>{latencies[len(latencies) // 2]:.0f} ms</b> (median of the last "
        f"{len(latencies)} frames)"
        if latencies
        else "latency <i>no tagged frame yet</i>"
    )
    freezes = counters.freeze_count
    colour = "#d62728" if freezes else "#2ca02c"
    text = (
        f"viewer: {latency} · <b style='color:{colour}'>{freezes} freeze"
        f"{'' if freezes == 1 else 's'}</b> ({counters.total_freezes_duration_ms:.0f} ms)"
    )
    if counters.frames_untagged:
        text += f" · {counters.frames_untagged} untagged"
    return text


def chat_html(peer: Peer, lines: int) -> str:
    if not peer.chat_log:
        return "<i style='color:#777'>no chat yet</i>"
    rows = []
    for message in peer.chat_log[-lines:]:
        stamp = time.strftime("%H:%M:%S", time.localtime(message.t))
        who = "you" if message.remote is None else message.sender
        rows.append(
            f"<span style='color:#777'>{stamp}</span> <b>{html.escape(who)}</b>: "
            f"{html.escape(message.text)}"
        )
    return "<div style='font-size:90%'>" + "<br>".join(rows) + "</div>"


def failure_html(exc: BaseException, what: str | None = None) -> str:
    """A widget's status line for a control that failed (``what``: which one)."""
    failed = f"{html.escape(what)} failed: " if what else ""
    return f"<span style='color:#c00'>{failed}{html.escape(f'{type(exc).__name__}: {exc}')}</span>"


def strip_tags(text: str) -> str:
    out: list[str] = []
    inside = False
    for char in text.replace("<br>", "\n"):
        if char == "<":
            inside = True
        elif char == ">":
            inside = False
        elif not inside:
            out.append(char)
    return html.unescape("".join(out))
