"""``python -m rtclab.signaling``: run the signaling server in the foreground."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from .runner import add_server_arguments, serve_main, server_options


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rtclab.signaling",
        description="WebRTC signaling server (JSON over WebSocket) for rtclab.",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=8765, help="TCP port, 0 = any free port (default: %(default)s)"
    )
    parser.add_argument("--path", default="/signal", help="WebSocket path (default: %(default)s)")
    parser.add_argument(
        "--compression",
        action="store_true",
        help="accept permessage-deflate when a client offers it (default: off)",
    )
    add_server_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    return serve_main(args.host, args.port, args.path, args.compression, **server_options(args))


if __name__ == "__main__":
    sys.exit(main())
