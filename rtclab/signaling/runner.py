"""The stand-alone server's command line: its options and the foreground runner.

One runner for ``python -m rtclab.signaling`` and ``rtclab serve``: both parse the rule
options of :func:`add_server_arguments`, turn them into :class:`SignalingServer` arguments
with :func:`server_options`, and run :func:`serve_main` until SIGINT/SIGTERM. Never used
from a notebook: there, ``await SignalingServer().start()`` runs in the kernel's loop.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .http import HttpHandler
from .protocol import MAX_MESSAGE_SIZE
from .server import SignalingServer

__all__ = ["add_server_arguments", "serve_main", "server_options"]


def _env_token() -> str | None:
    return os.environ.get("RTCLAB_SIGNALING_TOKEN") or None


def add_server_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """The rule options shared by ``python -m rtclab.signaling`` and ``rtclab serve``."""
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        # absent unless given, so that ``rtclab -v serve`` keeps the top-level flag
        default=argparse.SUPPRESS,
        help="log connections, joins, leaves and refused messages",
    )
    parser.add_argument(
        "--token",
        default=None,
        help="token every join must present (default: $RTCLAB_SIGNALING_TOKEN; "
        "prefer the variable: command lines are visible to other users)",
    )
    parser.add_argument(
        "--room-token",
        action="append",
        default=[],
        metavar="ROOM=TOKEN",
        help="a room that needs its own token (repeatable)",
    )
    parser.add_argument(
        "--origin",
        action="append",
        default=None,
        metavar="ORIGIN",
        help="allowed browser Origin (repeatable; 'null-origin' admits clients "
        "sending none; default: any)",
    )
    parser.add_argument(
        "--max-message-size",
        type=int,
        default=MAX_MESSAGE_SIZE,
        help="largest frame in bytes, larger ones close with 1009 (default: %(default)s)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=100.0,
        help="messages per second per client after the burst, 0 = unlimited (default: %(default)s)",
    )
    parser.add_argument(
        "--burst",
        type=int,
        default=1000,
        help="messages a client may send at once (default: %(default)s)",
    )
    parser.add_argument(
        "--max-queue",
        type=int,
        default=2**20,
        help="unsent bytes after which a client that does not read is "
        "disconnected (default: %(default)s)",
    )
    parser.add_argument("--max-room-size", type=int, default=64, help="default: %(default)s")
    parser.add_argument("--max-rooms", type=int, default=10_000, help="default: %(default)s")
    parser.add_argument("--max-clients", type=int, default=10_000, help="default: %(default)s")
    parser.add_argument(
        "--ping-interval",
        type=float,
        default=20.0,
        help="ping clients silent this long, 0 = never (default: %(default)s)",
    )
    parser.add_argument(
        "--ping-timeout",
        type=float,
        default=20.0,
        help="then drop them after this long (default: %(default)s)",
    )
    parser.add_argument("--no-metrics", action="store_true", help="do not serve GET /metrics")
    parser.add_argument(
        "--redis",
        default=None,
        metavar="URL",
        help="share rooms with other server processes through Redis, e.g. "
        "redis://127.0.0.1:6379/0 (needs the 'redis' extra)",
    )
    parser.add_argument(
        "--redis-prefix",
        default="rtclab:signal",
        help="Redis key and channel prefix: servers sharing it share rooms (default: %(default)s)",
    )


def server_options(args: argparse.Namespace) -> dict[str, Any]:
    """:class:`SignalingServer` keyword arguments from :func:`add_server_arguments`' options."""
    room_tokens: dict[str, str] = {}
    for item in args.room_token:
        room, sep, secret = item.partition("=")
        if not sep or not room or not secret:
            raise SystemExit(f"--room-token wants ROOM=TOKEN, not {item!r}")
        room_tokens[room] = secret
    origins = None
    if args.origin is not None:
        origins = [None if o == "null-origin" else o for o in args.origin]
    return {
        "token": args.token or _env_token(),
        "room_tokens": room_tokens,
        "origins": origins,
        "max_message_size": args.max_message_size,
        "rate": args.rate or None,
        "burst": args.burst,
        "max_queue": args.max_queue,
        "max_room_size": args.max_room_size or None,
        "max_rooms": args.max_rooms or None,
        "max_clients": args.max_clients or None,
        "ping_interval": args.ping_interval or None,
        "ping_timeout": args.ping_timeout,
        "metrics_path": None if args.no_metrics else "/metrics",
        "redis_url": args.redis,
        "redis_prefix": args.redis_prefix,
    }


def serve_main(
    host: str,
    port: int,
    path: str = "/signal",
    compression: bool = False,
    client: Callable[[SignalingServer], None] | None = None,
    *,
    routes: Mapping[str, HttpHandler] | None = None,
    notes: Callable[[SignalingServer], Iterable[str]] | None = None,
    **options: Any,
) -> int:
    """Run a server in the foreground until SIGINT/SIGTERM (for the CLI); returns the exit code.

    ``options`` are :class:`SignalingServer` keyword arguments. Blocking (it owns its event
    loop): never call it from a notebook; there, use ``await SignalingServer().start()``.
    ``client`` serves the browser client at ``/``: ``rtclab serve`` passes
    :func:`rtclab.web.serve_client` (the web layer sits above this one, so it is handed in);
    ``routes`` adds plain-HTTP routes (path -> handler); ``notes(server)`` gives lines to
    print once the server listens (its port is known then).
    """

    async def run() -> None:
        server = SignalingServer(host, port, path, "deflate" if compression else None, **options)
        for route, handler in (routes or {}).items():
            server.add_route(route, handler)
        if client is not None:
            client(server)
        url = await server.start()
        print(f"rtclab signaling server listening on {url}", flush=True)
        if client is not None:
            print(f"browser client: http://{host}:{server.port}/?room=lab&user=NAME", flush=True)
        for line in notes(server) if notes is not None else ():
            print(line, flush=True)
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stopping.set)
            except (NotImplementedError, RuntimeError):  # not the main thread / Windows
                pass
        try:
            await stopping.wait()
        finally:
            await server.stop()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"rtclab signaling server: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    except RuntimeError as exc:  # e.g. the redis extra is missing, or Redis is unreachable
        print(f"rtclab signaling server: {exc}", file=sys.stderr)
        return 1
    return 0
