"""The ``rtclab`` command: ``demo``, ``serve``, ``turn-credentials``, ``turn-check``, ``peer``,
``load``."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from . import __version__


class UsageError(Exception):
    """A mistake the user can fix: :func:`main` prints ``rtclab COMMAND: message`` and exits 2
    instead of showing a traceback."""


def _demo(args: argparse.Namespace) -> int:
    from .demo import OutputFolderError, OutputWriteError, run_demo

    try:
        asyncio.run(run_demo(args.out, peers=args.peers, duration=args.duration))
    except OutputFolderError as exc:
        raise UsageError(f"{exc}; pass --out a folder you can write to") from None
    except OutputWriteError as exc:
        print(f"rtclab demo: {exc}; rerun with --out a folder you can write to", file=sys.stderr)
        return 1
    return 0


_DEMO_PEERS = (2, 8)  # rtclab.demo.run_demo names its peers alice..heidi


def _demo_peers(text: str) -> int:
    low, high = _DEMO_PEERS
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"give a whole number from {low} to {high}, not {text!r}")
    return value


def _positive_seconds(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"give a positive whole number of seconds, not {text!r}")
    return value


def _serve(args: argparse.Namespace) -> int:
    if getattr(args, "turn_secret_file", None):
        return _serve_with_turn(args)
    from .signaling.runner import serve_main, server_options
    from .web import serve_client

    return serve_main(
        args.host, args.port, path=args.path, compression=args.deflate,
        client=None if args.no_client else serve_client, **server_options(args),
    )  # fmt: skip


def _read_turn_secret(path: str | None, option: str) -> str:
    """The TURN secret from a file (``-`` = stdin) or ``$RTCLAB_TURN_SECRET``: never from
    the command line, where ``ps`` and shell history would show it. Only the first line
    counts (coturn's ``static-auth-secret`` is one line)."""
    import os

    if path is None:
        value = os.environ.get("RTCLAB_TURN_SECRET", "").strip()
        if not value:
            raise UsageError(
                f"no TURN secret: pass {option} FILE (or - for stdin) or set RTCLAB_TURN_SECRET"
            )
        return value
    if path == "-":
        value = sys.stdin.readline().strip()
        if not value:
            raise UsageError(f"{option} -: stdin gave no secret; pipe it in as one line")
        return value
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read(1 << 16)
    except FileNotFoundError:
        problem = "no such file"
    except IsADirectoryError:
        problem = "it is a folder, not a file"
    except OSError as exc:
        problem = f"cannot read it ({exc.strerror or exc})"
    except UnicodeDecodeError:
        problem = "it is not UTF-8 text"
    else:
        value = text.partition("\n")[0].strip()
        if value:
            return value
        problem = "its first line is empty" if text.strip() else "the file is empty"
    raise UsageError(
        f"{option} {path}: {problem}; give a file with coturn's static-auth-secret "
        "on its first line"
    )


def _turn_credentials(args: argparse.Namespace) -> int:
    import json

    from .ice.credentials import turn_credentials

    secret = _read_turn_secret(args.secret_file, "--secret-file")
    try:
        creds = turn_credentials(secret, args.user, args.url or [_DEFAULT_TURN_URL], ttl=args.ttl)
    except ValueError as exc:
        print(f"rtclab turn-credentials: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(creds.to_dict(), indent=2))
    return 0


def _turn_check(args: argparse.Namespace) -> int:
    """Run the doctor over the URLs; print its table; 0 when every URL works, 1 if not."""
    import os

    from .ice.turn_doctor import IceUrl, doctor

    for url in args.urls:
        try:
            IceUrl.parse(url)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    if args.credential is not None and args.secret_file is not None:
        raise UsageError("give --credential or --secret-file, not both")
    if (args.credential is not None or args.secret_file is not None) and not args.user:
        raise UsageError("--credential and --secret-file need --user (the TURN user name)")
    if args.cafile is not None and not os.path.isfile(args.cafile):
        raise UsageError(f"--cafile {args.cafile}: no such file; give a PEM CA bundle")
    if args.timeout <= 0:
        raise UsageError(f"--timeout {args.timeout:g}: give a positive number of seconds")
    secret = None
    username, credential = args.user, args.credential
    if args.secret_file is not None:
        secret = _read_turn_secret(args.secret_file, "--secret-file")
        username = None  # TURN REST credentials are minted for --user from the secret
    report = asyncio.run(
        doctor(
            args.urls, username=username if credential is not None else None,
            credential=credential, secret=secret, user=args.user or "doctor",
            cafile=args.cafile, realm=args.realm, timeout=args.timeout,
        )
    )  # fmt: skip
    if args.json:
        print(report.frame.to_json(orient="records", indent=2))
    else:
        print(report.table())
    return 0 if report.ok else 1


def _serve_with_turn(args: argparse.Namespace) -> int:
    """``serve`` plus ``GET /api/turn-credentials`` (bearer token), through the same
    foreground runner as plain ``serve`` (:func:`~rtclab.signaling.runner.serve_main`)."""
    import os
    import secrets

    from .ice.credentials import TURN_CREDENTIALS_PATH, make_credentials_handler
    from .signaling.runner import serve_main, server_options
    from .signaling.server import SignalingServer
    from .web import serve_client

    secret = _read_turn_secret(args.turn_secret_file, "--turn-secret-file")
    token = os.environ.get("RTCLAB_TURN_TOKEN") or secrets.token_urlsafe(24)
    urls = args.turn_url or [_DEFAULT_TURN_URL]

    def notes(server: SignalingServer) -> list[str]:
        bearer = (
            "with the bearer token from $RTCLAB_TURN_TOKEN"
            if os.environ.get("RTCLAB_TURN_TOKEN")
            else f"with 'Authorization: Bearer {token}'"
        )
        lines = [f"TURN credentials: GET http://{args.host}:{server.port}{TURN_CREDENTIALS_PATH} "
                 + bearer]  # fmt: skip
        if not args.no_client:
            lines.append("browser client with TURN: add &turnToken=<token> to its address")
        return lines

    return serve_main(
        args.host, args.port, path=args.path, compression=args.deflate,
        client=None if args.no_client else serve_client,
        routes={TURN_CREDENTIALS_PATH: make_credentials_handler(secret, urls, token)},
        notes=notes, **server_options(args),
    )  # fmt: skip


_DEFAULT_TURN_URL = "turn:127.0.0.1:3478?transport=udp"


def _command(sub: Any, name: str, func: Any, **texts: str) -> argparse.ArgumentParser:
    """The parser of subcommand ``name``, which runs ``func(args)``."""
    parser: argparse.ArgumentParser = sub.add_parser(name, **texts)
    parser.set_defaults(func=func)
    return parser


def _turn_url_option(parser: Any, flag: str, what: str) -> None:
    parser.add_argument(
        flag,
        action="append",
        metavar="URL",
        help=f"{what} (repeatable; default {_DEFAULT_TURN_URL})",
    )


def _peer(args: argparse.Namespace) -> int:
    from .cc import load_estimator
    from .ice.config import IceConfig, IceServer
    from .peer_process import run_peer

    try:
        estimator = None if args.estimator is None else load_estimator(args.estimator)
    except ValueError as exc:
        print(f"rtclab peer: --estimator: {exc}", file=sys.stderr)
        return 2

    try:
        servers = tuple(
            IceServer(s["urls"], s.get("username"), s.get("credential"))
            for s in json.loads(args.ice_servers)
        )
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        print(
            "rtclab peer: --ice-servers must be a JSON list like "
            f'\'[{{"urls": "stun:127.0.0.1:3478"}}]\' ({type(exc).__name__}: {exc})',
            file=sys.stderr,
        )
        return 2
    ice = IceConfig(
        ice_servers=servers,
        interfaces=tuple(args.interface) if args.interface else IceConfig().interfaces,
        connect_timeout=args.connect_timeout,
    )
    return run_peer(
        args.signal,
        args.name,
        room=args.room,
        video=not args.no_video,
        audio=not args.no_audio,
        data=not args.no_data,
        width=args.width,
        height=args.height,
        fps=args.fps,
        duration=args.duration,
        stats_interval=args.stats_interval,
        ice=ice,
        estimator=estimator,
    )


def _load(args: argparse.Namespace) -> int:
    from .experiments.load import load_test

    if min(args.peers, args.rooms, 1 if args.workers is None else args.workers) < 1:
        raise UsageError("--peers, --rooms and --workers must be at least 1")
    try:
        result = asyncio.run(load_test(
            args.peers, args.rooms, args.workers, url=args.url, duration=args.duration,
            video=args.video, audio=args.audio, width=args.width, height=args.height,
            fps=args.fps, connect_timeout=args.connect_timeout, progress=not args.quiet,
        ))  # fmt: skip
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except ConnectionError as exc:
        raise UsageError(f"{exc}; start it (rtclab serve) or fix --url") from None
    except TimeoutError as exc:  # the machine is too busy to start the workers
        print(f"rtclab load: {exc}; try fewer --workers or a quieter machine", file=sys.stderr)
        return 1
    print(result.report())
    if args.csv:
        result.to_csv(args.csv)
    done = result.frame["first_frame" if args.video else "connected"]
    return 0 if bool(done.all()) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rtclab", description="A WebRTC lab: signaling, aiortc peers, stats."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = _command(
        sub,
        "demo",
        _demo,
        help="run 3 peers in a room for ~10 s; print a summary, write CSV and an HTML report",
        description="Start a signaling server and peers on loopback (no network needed), "
        "collect stats, print a per-pair summary and write samples.csv, events.csv and "
        "dashboard.html to the output folder.",
    )
    demo.add_argument("--out", default="rtclab-out", help="output folder (default: %(default)s)")
    demo.add_argument(
        "--peers", type=_demo_peers, default=3, metavar="N",
        help=f"number of peers, {_DEMO_PEERS[0]} to {_DEMO_PEERS[1]} (default: %(default)s)",
    )  # fmt: skip
    demo.add_argument(
        "--duration", type=float, default=10.0, help="seconds of media (default: %(default)s)"
    )

    serve = _command(
        sub,
        "serve",
        _serve,
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
    serve.add_argument(
        "--no-client", action="store_true",
        help="do not serve the browser client at / (served by default: "
        "http://HOST:PORT/?room=R&user=U)",
    )  # fmt: skip
    from .signaling.runner import add_server_arguments

    add_server_arguments(serve.add_argument_group(
        "signaling rules",
        "auth, Origin, limits, liveness, metrics and Redis scale-out (see SignalingServer)",
    ))  # fmt: skip
    turn_opts = serve.add_argument_group(
        "TURN credentials endpoint",
        "serve GET /api/turn-credentials beside the WebSocket; requests need "
        "'Authorization: Bearer <token>' (token from $RTCLAB_TURN_TOKEN, else printed)",
    )
    turn_opts.add_argument(
        "--turn-secret-file", metavar="FILE",
        help="file holding coturn's static-auth-secret (- = stdin); enables the endpoint",
    )  # fmt: skip
    _turn_url_option(turn_opts, "--turn-url", "TURN URL handed out")

    creds = _command(
        sub,
        "turn-credentials",
        _turn_credentials,
        help="print time-limited TURN REST credentials (coturn use-auth-secret) as JSON",
        description="Mint username = '<expiry>:<user>', credential = "
        "base64(HMAC-SHA1(secret, username)) and print the iceServers JSON a browser hands "
        "to RTCPeerConnection. The secret comes from --secret-file or $RTCLAB_TURN_SECRET, "
        "never from the command line.",
    )
    creds.add_argument("--secret-file", metavar="FILE", help="file with the secret (- = stdin)")
    creds.add_argument("--user", default="lab", help="user name (default: %(default)s)")
    creds.add_argument(
        "--ttl",
        type=_positive_seconds,
        default=24 * 3600,
        metavar="SECONDS",
        help="lifetime in seconds, > 0 (default: %(default)s)",
    )
    _turn_url_option(creds, "--url", "TURN URL")

    check = _command(
        sub,
        "turn-check",
        _turn_check,
        help="check STUN/TURN servers step by step and say what is wrong",
        description="Check each URL (stun:, turn:, turns:, ?transport=udp|tcp): name "
        "resolution, reachability, TLS certificate, STUN binding, TURN authentication, "
        "allocation, relay echo between two allocations, time left on the credentials. "
        "Prints a table and a verdict; exits 0 when every URL works, 1 when one cannot "
        "relay (or answer, for stun:), 2 on bad input.",
    )
    check.add_argument("urls", nargs="+", metavar="URL", help="stun:/turn:/turns: URL")
    check.add_argument("--user", help="TURN user name (with --credential or --secret-file)")
    check.add_argument("--credential", help="TURN password (long-term or TURN REST)")
    check.add_argument(
        "--secret-file", metavar="FILE",
        help="coturn static-auth-secret (- = stdin): mint TURN REST credentials for --user",
    )  # fmt: skip
    check.add_argument("--cafile", help="PEM CA bundle trusted instead of the system's (turns:)")
    check.add_argument("--realm", help="the realm the credentials were made for")
    check.add_argument(
        "--timeout", type=float, default=5.0, metavar="SECONDS",
        help="seconds each step may take (default: %(default)s)",
    )  # fmt: skip
    check.add_argument("--json", action="store_true", help="print the frame as JSON records")

    peer = _command(
        sub,
        "peer",
        _peer,
        help="run one aiortc peer in a room until Ctrl-C (a remote for a lab)",
        description="Join ROOM on a signaling server as NAME and mesh with everyone there, "
        "sending the synthetic test pattern and tone; prints one line per event.",
    )
    peer.add_argument("--signal", required=True, help="signaling URL, ws://HOST:PORT/signal")
    peer.add_argument("--name", required=True, help="user id in the room")
    peer.add_argument("--room", default="lab", help="room (default: %(default)s)")
    peer.add_argument("--no-video", action="store_true", help="send no video")
    peer.add_argument("--no-audio", action="store_true", help="send no audio")
    peer.add_argument("--no-data", action="store_true", help="open no data channels")
    peer.add_argument("--width", type=int, default=320, help="video width (default: %(default)s)")
    peer.add_argument("--height", type=int, default=240, help="video height (default: %(default)s)")
    peer.add_argument("--fps", type=float, default=15.0, help="frames/s (default: %(default)s)")
    peer.add_argument("--duration", type=float, default=None, help="leave after S seconds")
    peer.add_argument(
        "--stats-interval", type=float, default=None,
        help="also print {\"rows\": [...]} stats lines every S seconds",
    )  # fmt: skip
    peer.add_argument(
        "--interface", action="append", default=[],
        help="gather ICE candidates on this address (repeatable; default: loopback only)",
    )  # fmt: skip
    peer.add_argument(
        "--ice-servers", default="[]",
        help='JSON list like RTCConfiguration.iceServers (default: none, so no internet)',
    )  # fmt: skip
    peer.add_argument(
        "--connect-timeout", type=float, default=10.0,
        help="fail a connection not up after S seconds (default: %(default)s)",
    )  # fmt: skip
    peer.add_argument(
        "--estimator", default=None, metavar="MODULE:CLASS",
        help="bandwidth estimator for the video it receives, e.g. rtclab.cc:LossBasedAimd "
        "(default: aiortc's own)",
    )  # fmt: skip
    _load_parser(sub)
    return parser


def _load_parser(sub: Any) -> None:
    load = _command(
        sub,
        "load",
        _load,
        help="load-test a signaling server: N aiortc peers in R rooms from W processes",
        description="Join N peers at once in R rooms (a mesh each), spread over W worker "
        "processes, against --url or a local server started for the run; print join -> "
        "connected and join -> first frame percentiles, failures and the server's "
        "/metrics. Exits 0 when every peer got there, 1 when one did not, 2 on bad input.",
    )
    load.add_argument("--peers", type=int, default=6, metavar="N", help="(default: %(default)s)")
    load.add_argument("--rooms", type=int, default=2, metavar="R", help="(default: %(default)s)")
    load.add_argument(
        "--workers", type=int, default=None, metavar="W",
        help="worker processes (default: one per CPU)",
    )  # fmt: skip
    load.add_argument(
        "--url", help="signaling URL, ws://HOST:PORT/signal[?token=T] (default: a local server)"
    )
    load.add_argument(
        "--duration", type=float, default=5.0, metavar="S",
        help="seconds to hold the call once everyone is in (default: %(default)s)",
    )  # fmt: skip
    load.add_argument(
        "--video", action=argparse.BooleanOptionalAction, default=True,
        help="send video (off: data channels only, no first frame)",
    )  # fmt: skip
    load.add_argument("--audio", action=argparse.BooleanOptionalAction, default=False,
                      help="send audio (default: off)")  # fmt: skip
    load.add_argument("--width", type=int, default=160, help="video width (default: %(default)s)")
    load.add_argument("--height", type=int, default=120, help="(default: %(default)s)")
    load.add_argument("--fps", type=float, default=15.0, help="frames/s (default: %(default)s)")
    load.add_argument(
        "--connect-timeout", type=float, default=30.0, metavar="S",
        help="give up on a peer's connections after S seconds (default: %(default)s)",
    )  # fmt: skip
    load.add_argument("--csv", metavar="FILE", help="also write one row per peer to FILE")
    load.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


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
    except UsageError as exc:
        print(f"rtclab {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader went away (``rtclab turn-credentials ... | head``): not our error;
        # point stdout at /dev/null so Python's exit flush does not raise again
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # what a shell reports for a writer stopped by SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
