"""Server counters as a snapshot and in Prometheus text format (pure, no I/O).

The server keeps plain integer attributes on its hot path (an ``+=`` each, no metric
objects or locks) and only assembles them here when someone asks: :meth:`SignalingServer.
metrics` for Python, ``GET /metrics`` for a Prometheus scraper.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

__all__ = ["CONTENT_TYPE", "METRICS", "render_prometheus"]

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

METRICS: Final[dict[str, tuple[str, str, str | None]]] = {
    # snapshot key: (type, help, label name for dict values)
    "clients": ("gauge", "WebSocket clients connected now.", None),
    "rooms": ("gauge", "Rooms with at least one member now.", None),
    "connections_total": ("counter", "WebSocket connections accepted.", None),
    "messages_received_total": ("counter", "Client messages received.", None),
    "messages_relayed_total": ("counter", "offer/answer/ice-candidate messages relayed.", None),
    "messages_refused_total": ("counter", "Client messages refused, by error code.", "code"),
    "messages_dropped_total": (
        "counter",
        "Outgoing messages dropped because the recipient was closing or too slow.",
        None,
    ),
    "bytes_in_total": ("counter", "Bytes read from clients (WebSocket framing included).", None),
    "bytes_out_total": ("counter", "Bytes written to clients (WebSocket framing included).", None),
    "disconnects_total": ("counter", "Connections ended by the server, by reason.", "reason"),
}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render_prometheus(snapshot: Mapping[str, Any], prefix: str = "rtclab_signaling_") -> str:
    """Prometheus text exposition (format 0.0.4) of a :meth:`SignalingServer.metrics`
    snapshot; keys it does not know are skipped, so the snapshot may grow freely."""
    lines: list[str] = []
    for key, (kind, help_text, label) in METRICS.items():
        if key not in snapshot:
            continue
        name = prefix + key
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        value = snapshot[key]
        if label is None:
            lines.append(f"{name} {value}")
        else:
            for item, count in sorted(value.items()):
                lines.append(f'{name}{{{label}="{_escape(str(item))}"}} {count}')
    return "\n".join(lines) + "\n"
