"""The browser client (plain ES modules, no build step) and the routes that serve it.

``serve_client(server)`` puts the page at ``/`` on the signaling server, so one port serves
the page, its WebSocket and ``/api/turn-credentials``: ``http://HOST:PORT/?room=R&user=U``.

The page (``client.js``) does what the reference write-up's browser client and VideoRoom do:
a camera (or Chromium's fake device), a mesh with every room member where the joiner offers,
trickled candidates, screen share through ``replaceTrack`` and back to the camera, ``chat``
(ordered) and ``cursors`` (``ordered: false, maxRetransmits: 0``) data channels with
back-pressure on ``bufferedAmount``, and a diagnostics panel. It also reports its own
``getStats`` as ``stats`` messages, so browser rows join the lab's samples frame in the
same units (see ``stats.js`` and :meth:`rtclab.stats.StatsCollector.add_rows`).

mDNS ``.local`` candidates are *avoided*, not resolved: Chromium hides host addresses behind
mDNS names only while the page has no camera/microphone permission, and the page asks for
the camera before it connects, so it gathers plain IP host candidates. That matters for
aiortc peers: aioice resolves ``.local`` names through a real multicast socket and waits up
to a second doing it (and a lab must never send packets beyond loopback). A page without
media permission would still work with browsers, not with a loopback-only aiortc peer.
On a loopback-only network Chromium also needs ``--allow-loopback-in-peer-connection``:
by default it never offers 127.0.0.1 candidates.

Screen share asks ``getDisplayMedia`` and, when that fails (no user gesture, no picker, as in
headless tests), shares a generated 960x540 canvas (``captureStream``) instead; ``?screen=canvas``
picks the canvas outright, which the tests do so the swap is deterministic. Either way the
track goes in with ``replaceTrack`` (no renegotiation) and the camera comes back when it ends.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from typing import Final, Protocol
from urllib.parse import urlencode

from ..signaling.http import HttpHandler, Request, Response, http_response

__all__ = ["ASSETS", "CHROMIUM_FLAGS", "asset", "client_url", "serve_client", "widget_esm"]

CHROMIUM_FLAGS: Final[tuple[str, ...]] = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # WebRTC on a loopback-only network: Chromium offers no 127.0.0.1 candidates without
    # this; the fake devices stand in for a camera, and camera permission (granted by the
    # fake UI) makes Chromium gather plain IP host candidates instead of mDNS .local names.
    "--allow-loopback-in-peer-connection",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
)
"""Flags for a headless Chromium (no display, no network beyond the lab) that joins a
loopback lab as a WebRTC peer with its fake camera: what the tests and benches launch."""

ASSETS: Final[dict[str, str]] = {
    "index.html": "text/html; charset=utf-8",
    "client.js": "text/javascript; charset=utf-8",
    "mesh.js": "text/javascript; charset=utf-8",
    "stats.js": "text/javascript; charset=utf-8",
    "qoe.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
"""Files served by :func:`serve_client`, with their content types (nothing else is served)."""


def asset(name: str) -> str:
    """The text of one packaged file of the client."""
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")


class Routes(Protocol):
    """Anything that serves plain-HTTP routes, like :class:`rtclab.SignalingServer`."""

    def add_route(self, path: str, handler: HttpHandler) -> None: ...


def serve_client(server: Routes) -> None:
    """Serve the browser client from ``server``: ``/`` (and ``/index.html``) plus its assets.

    Files are read once, here: the routes answer from memory and never touch the disk
    while the loop relays signaling. Routes are exact paths, so nothing outside
    :data:`ASSETS` can be requested (no path traversal to guard against).
    """

    def route(body: bytes, content_type: str) -> Callable[[Request], Response]:
        def handler(request: Request) -> Response:
            return http_response(200, body, content_type)

        return handler

    for name, content_type in ASSETS.items():
        handler = route(asset(name).encode(), content_type)
        server.add_route(f"/{name}", handler)
        if name == "index.html":
            server.add_route("/", handler)
    # browsers ask for it on every page load; an empty answer keeps consoles free of 404s
    server.add_route("/favicon.ico", lambda request: http_response(204))


def client_url(host: str, port: int, room: str, user: str, **params: str | int | None) -> str:
    """``http://host:port/?room=…&user=…`` plus ``params`` (``token``, ``turnToken``,
    ``policy`` = ``relay``, ``turn`` = ``udp,tcp,tls``, ``screen``, ``audio``, ``stats``;
    ``None`` values are left out)."""
    query = {"room": room, "user": user}
    query.update({k: str(v) for k, v in params.items() if v is not None})
    return f"http://{host}:{port}/?{urlencode(query)}"


def widget_esm() -> str:
    """The BrowserPeer widget's ES module: ``mesh.js`` + ``stats.js`` + ``widget.js`` as one
    file, since anywidget loads a single module from a string (relative imports cannot
    resolve) and the page and the widget must share one mesh implementation."""
    return "\n".join(asset(name) for name in ("mesh.js", "stats.js", "widget.js"))
