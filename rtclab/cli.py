"""The ``rtclab`` command: ``demo`` and ``serve`` (more subcommands arrive with their issues)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    asyncio.run(run_demo(args.out, peers=args.peers, duration=args.duration))
    return 0


def _serve(args: argparse.Namespace) -> int:
    from .signaling.server import serve_main

    return serve_main(args.host, args.port, path=args.path, compression=args.deflate)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rtclab", description="A WebRTC lab: signaling, aiortc peers, stats."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="run 3 peers in a room for ~10 s; print a summary, write CSV and an HTML report",
        description="Start a signaling server and peers on loopback (no network needed), "
        "collect stats, print a per-pair summary and write samples.csv, events.csv and "
        "dashboard.html to the output folder.",
    )
    demo.add_argument("--out", default="rtclab-out", help="output folder (default: %(default)s)")
    demo.add_argument("--peers", type=int, default=3, help="number of peers (default: %(default)s)")
    demo.add_argument(
        "--duration", type=float, default=10.0, help="seconds of media (default: %(default)s)"
    )
    demo.set_defaults(func=_demo)

    serve = sub.add_parser(
        "serve",
        help="run the signaling server stand-alone",
        description="Run the WebSocket signaling server until Ctrl-C / SIGTERM.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address (default: %(default)s)")
    serve.add_argument(
        "--port", type=int, default=8765, help="port, 0 = any (default: %(default)s)"
    )
    serve.add_argument("--path", default="/signal", help="WebSocket path (default: %(default)s)")
    serve.add_argument(
        "--deflate", action="store_true", help="accept permessage-deflate (off: costs CPU)"
    )
    serve.set_defaults(func=_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
