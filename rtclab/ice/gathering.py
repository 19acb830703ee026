"""Hooks into aioice's candidate gathering: interfaces, TURN/STUN server order, TLS trust,
named failures and candidate timing.

aioice runs each STUN/TURN query as a task and, when one raises, drops the exception without
a word: a TURN 401, an unreachable server or an untrusted certificate all look like "no relay
candidate". aiortc, for its part, hands aioice only the *first* STUN and the first TURN URL
and lets aioice create TLS connections with the system trust store. Three module globals
that aioice looks up at every gather are the hook points, replaced through
:mod:`rtclab._compat.aioice` like every other use of aioice's internals:

- ``aioice.ice.get_host_addresses``: which interfaces to gather on (was in ``config.py``);
- ``aioice.ice.relayed_candidate``: we try every TURN URL of the peer's
  :class:`~rtclab.ice.config.IceConfig` in order until one allocates (aiortc's own pick is
  the first, so the first URL still wins when it works), pass an :class:`ssl.SSLContext`
  trusting ``IceConfig.tls_ca_file`` for ``turns:``, name any failure, and pre-create TURN
  permissions (see :func:`rtclab._compat.aioice.turn_prepermit`);
- ``aioice.ice.server_reflexive_candidate``: likewise for STUN URLs.

What the hooks learn goes to the :class:`GatheringLog` of the connection being gathered. A
peer selects its config and log with :func:`gathering_on`, a context manager around
``setLocalDescription``/``setRemoteDescription``; gathering runs in tasks that copy the
context, so concurrent connections never mix. Code that never enters :func:`gathering_on`
gets aioice's behaviour unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import ipaddress
import logging
import os
import ssl
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aioice import stun

from .._compat.aioice import (
    hold_early_channel_data,
    on_error_received,
    original_get_host_addresses,
    original_relayed_candidate,
    original_server_reflexive_candidate,
    replace_gathering_functions,
    turn_prepermit,
)

if TYPE_CHECKING:
    from .config import IceConfig

__all__ = [
    "GatheringLog",
    "IceFailure",
    "ServerUrl",
    "gathering_on",
    "parse_server_url",
]

log = logging.getLogger(__name__)

#: aioice cancels STUN/TURN queries still pending after this long (``get_component_candidates``).
AIOICE_GATHER_DEADLINE = 5.0

EventCallback = Callable[[str, Any], None]
CandidateKey = tuple[str, str, int]  # (protocol, address, port)


@dataclass(frozen=True)
class ServerUrl:
    """One parsed ``stun:``/``turn:``/``turns:`` URL, as aioice needs it."""

    url: str
    scheme: str
    host: str
    port: int
    transport: str | None = None  # udp/tcp for turn(s), None for stun
    username: str | None = field(default=None, repr=False)
    credential: str | None = field(default=None, repr=False)

    @property
    def is_turn(self) -> bool:
        return self.scheme in ("turn", "turns")

    @property
    def relay_protocol(self) -> str:
        """How we reach the server: ``udp``, ``tcp`` or ``tls`` (the stats' relay_protocol)."""
        return "tls" if self.scheme == "turns" else (self.transport or "udp")

    @property
    def supported(self) -> bool:
        """What aioice can do: STUN over UDP, TURN over UDP/TCP, TURN over TLS-on-TCP."""
        if self.scheme == "stun":
            return True
        if self.scheme == "turn":
            return self.transport in ("udp", "tcp")
        if self.scheme == "turns":
            return self.transport == "tcp"
        return False


def parse_server_url(
    url: str, username: str | None = None, credential: str | None = None
) -> ServerUrl:
    """Parse with aiortc's own parser, so we accept exactly what aiortc accepts."""
    from aiortc.rtcicetransport import parse_stun_turn_uri

    parsed = parse_stun_turn_uri(url)
    return ServerUrl(
        url=url,
        scheme=str(parsed["scheme"]),
        host=str(parsed["host"]),
        port=int(parsed["port"]),
        transport=parsed.get("transport"),
        username=username,
        credential=credential,
    )


@dataclass(frozen=True)
class IceFailure:
    """A named gathering/connectivity problem: ``kind`` for code, ``message`` for people."""

    kind: str  # turn-unauthorized | turn-forbidden | turn-unreachable | turn-tls | turn-error
    #            | stun-unreachable | stun-error | turn-unsupported
    url: str | None
    message: str
    t_ms: float


class GatheringLog:
    """What happened while one connection gathered and checked, filled by the aioice hooks.

    Candidate times are milliseconds since :meth:`begin`. Host candidates get the time their
    sockets were bound (the moment aioice started its server queries, or the end of
    gathering when there were none); server-reflexive and relayed candidates the time their
    query answered; remote candidates the time they reached us (negative when they came
    before our own gathering began, e.g. the candidates of an offer we answer).
    """

    def __init__(self, on_event: EventCallback | None = None) -> None:
        self.on_event = on_event
        self.started: float | None = None
        self.finished: float | None = None
        self.host_bound: float | None = None
        self.failures: list[IceFailure] = []
        self.turn_url: str | None = None
        """The TURN URL whose allocation is in use (aiortc would have used the first)."""
        self.stun_url: str | None = None
        self.local_times: dict[CandidateKey, float] = {}
        self.remote_seen: dict[CandidateKey, float] = {}  # monotonic arrival times
        self.servers: dict[CandidateKey, str] = {}
        """Which STUN/TURN URL produced each server-reflexive/relayed candidate."""
        self.relay_protocols: dict[CandidateKey, str] = {}

    # --- time ---------------------------------------------------------------------------

    def begin(self) -> None:
        if self.started is None:
            self.started = time.monotonic()

    def elapsed_ms(self, at: float | None = None) -> float:
        if self.started is None:
            return 0.0
        return ((time.monotonic() if at is None else at) - self.started) * 1000

    # --- filled by the hooks ------------------------------------------------------------

    def _emit(self, event: str, value: Any) -> None:
        if self.on_event is not None:
            try:
                self.on_event(event, value)
            except Exception:
                log.exception("gathering event listener failed")

    def fail(self, kind: str, url: str | None, message: str) -> IceFailure:
        failure = IceFailure(kind, url, message, round(self.elapsed_ms(), 1))
        if not any(f.kind == kind and f.url == url for f in self.failures):
            self.failures.append(failure)
            self._emit("turn-failed" if kind.startswith("turn") else "stun-failed", message)
        return failure

    def _server_candidate(self, candidate: Any, server: ServerUrl) -> None:
        key = candidate_key(candidate)
        self.local_times.setdefault(key, round(self.elapsed_ms(), 1))
        self.servers[key] = server.url
        if server.is_turn:
            self.relay_protocols[key] = server.relay_protocol
            self.turn_url = server.url
            self._emit("turn-allocated", f"{server.url} -> {candidate.host}:{candidate.port}")
        else:
            self.stun_url = server.url

    def _mark_host_bound(self) -> None:
        if self.host_bound is None:
            self.host_bound = time.monotonic()

    # --- filled by the peer -------------------------------------------------------------

    def end(self, local: Iterable[Any]) -> None:
        """Gathering finished: stamp host candidates, announce every candidate once."""
        self.finished = time.monotonic()
        bound = self.host_bound or self.finished
        for candidate in local:
            key = candidate_key(candidate)
            if key not in self.local_times:
                self.local_times[key] = round(self.elapsed_ms(bound), 1)
            via = self.servers.get(key)
            self._emit(
                "ice-candidate-gathered",
                f"{candidate.type} {key[0]} {key[1]}:{key[2]}"
                + (f" via {via}" if via else "")
                + f" at {self.local_times[key]:g} ms",
            )

    def stamp_remote(self, remote: Iterable[Any]) -> None:
        """Note the arrival time of remote candidates not seen before."""
        now = time.monotonic()
        for candidate in remote:
            self.remote_seen.setdefault(candidate_key(candidate), now)

    def remote_ms(self, candidate: Any) -> float | None:
        """When a remote candidate reached us, in ms since our gathering began (or None)."""
        seen = self.remote_seen.get(candidate_key(candidate))
        if seen is None or self.started is None:
            return None
        return round(self.elapsed_ms(seen), 1)

    def local_ms(self, candidate: Any) -> float | None:
        return self.local_times.get(candidate_key(candidate))

    def first_failure(self, prefix: str = "turn") -> IceFailure | None:
        for failure in self.failures:
            if failure.kind.startswith(prefix):
                return failure
        return None


def candidate_key(candidate: Any) -> CandidateKey:
    """(protocol, address, port) of an aioice or rtclab candidate."""
    protocol = getattr(candidate, "transport", None) or getattr(candidate, "protocol", "udp")
    address = getattr(candidate, "host", None) or getattr(candidate, "address", "")
    return (str(protocol).lower(), str(address), int(getattr(candidate, "port", 0)))


# --- context -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    interfaces: tuple[str, ...] | None
    config: IceConfig | None
    log: GatheringLog | None


_context: contextvars.ContextVar[_Context | None] = contextvars.ContextVar(
    "rtclab_ice_gathering", default=None
)


def _install() -> None:
    replace_gathering_functions(
        _get_host_addresses, _relayed_candidate, _server_reflexive_candidate
    )


@contextlib.contextmanager
def gathering_on(
    interfaces: Sequence[str] | None,
    *,
    config: IceConfig | None = None,
    log: GatheringLog | None = None,
) -> Iterator[None]:
    """Within this block, ICE gathering started by this task uses only ``interfaces``, the
    servers and CA of ``config``, and reports to ``log``."""
    _install()
    chosen = None if interfaces is None else tuple(interfaces)
    token = _context.set(_Context(chosen, config, log))
    try:
        yield
    finally:
        _context.reset(token)


def _get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    ctx = _context.get()
    if ctx is None or ctx.interfaces is None:
        return list(original_get_host_addresses(use_ipv4=use_ipv4, use_ipv6=use_ipv6))
    out = []
    for address in ctx.interfaces:
        version = ipaddress.ip_address(address).version
        if (version == 4 and use_ipv4) or (version == 6 and use_ipv6):
            out.append(address)
    return out


# --- TURN ----------------------------------------------------------------------------------


def _servers(config: IceConfig, turn: bool) -> list[ServerUrl]:
    out = []
    for server in config.ice_servers:
        urls = [server.urls] if isinstance(server.urls, str) else list(server.urls)
        for url in urls:
            try:
                parsed = parse_server_url(url, server.username, server.credential)
            except ValueError:
                continue
            if parsed.is_turn == turn:
                out.append(parsed)
    return out


def _ssl_for(config: IceConfig | None) -> ssl.SSLContext | bool:
    """``True`` = aioice's default context (system CAs); else one trusting ``tls_ca_file``."""
    if config is None or not config.tls_ca_file:
        return True
    try:
        stamp = os.stat(config.tls_ca_file).st_mtime_ns
    except OSError:
        stamp = 0  # let ssl raise the real error at connection time
    return _ssl_context(config.tls_ca_file, stamp)


@functools.lru_cache(maxsize=16)
def _ssl_context(cafile: str, mtime_ns: int) -> ssl.SSLContext:
    """Only ``cafile`` (like ``curl --cacert``): the system store would cost ~100 ms to
    load. Cached per file version, since contexts are reusable."""
    return ssl.create_default_context(cafile=cafile)


def describe_turn_error(exc: BaseException, server: ServerUrl, timeout: float) -> tuple[str, str]:
    """(kind, message) for an exception raised while allocating on ``server``."""
    where = f"{server.url}"
    if isinstance(exc, stun.TransactionFailed):
        code, reason = exc.response.attributes.get("ERROR-CODE", (0, ""))
        if code == 401:
            return (
                "turn-unauthorized",
                f"TURN 401 unauthorized (wrong secret or expired credential) from {where}",
            )
        if code == 403:
            return "turn-forbidden", f"TURN 403 forbidden from {where}: {reason}"
        return "turn-error", f"TURN error {code} {reason} from {where}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            "turn-tls",
            f"TURN TLS certificate not trusted for {where} "
            f"({getattr(exc, 'verify_message', None) or exc}); "
            "pass IceConfig(tls_ca_file=...) with the server's CA",
        )
    if isinstance(exc, ssl.SSLError):
        return "turn-tls", f"TURN TLS handshake with {where} failed: {exc}"
    if isinstance(exc, (stun.TransactionTimeout, asyncio.TimeoutError, TimeoutError)):
        return (
            "turn-unreachable",
            f"TURN server unreachable: no answer from {where} within {timeout:g}s",
        )
    if isinstance(exc, OSError):
        return "turn-unreachable", f"TURN server unreachable: {where}: {exc.strerror or exc}"
    return "turn-error", f"TURN allocation on {where} failed: {type(exc).__name__}: {exc}"


async def _relayed_candidate(**kwargs: Any) -> tuple[Any, Any]:
    ctx = _context.get()
    if ctx is None or ctx.config is None:
        return await original_relayed_candidate(**kwargs)  # type: ignore[no-any-return]
    config, glog = ctx.config, ctx.log
    if glog is not None:
        glog._mark_host_bound()
    servers = _servers(config, turn=True)
    usable = [s for s in servers if s.supported]
    for server in servers:
        if not server.supported and glog is not None:
            glog.fail("turn-unsupported", server.url, f"aioice cannot use {server.url} (skipped)")
    if not usable:  # aiortc found one we do not parse: let aioice do it
        return await original_relayed_candidate(**kwargs)  # type: ignore[no-any-return]

    loop = asyncio.get_running_loop()
    # Leave aioice's own deadline a margin, so *we* report the timeout, not a cancellation.
    deadline = loop.time() + AIOICE_GATHER_DEADLINE - 0.3
    last: BaseException | None = None
    for index, server in enumerate(usable):
        remaining = deadline - loop.time()
        if remaining <= 0.05:
            break
        budget = min(config.turn_timeout, remaining / (len(usable) - index))
        made: list[Any] = []

        def factory(made: list[Any] = made) -> Any:
            protocol = kwargs["protocol_factory"]()
            made.append(protocol)
            return protocol

        attempt = dict(
            kwargs,
            protocol_factory=factory,
            turn_server=(server.host, server.port),
            turn_username=server.username,
            turn_password=server.credential,
            turn_ssl=_ssl_for(config) if server.scheme == "turns" else False,
            turn_transport=server.transport or "udp",
        )
        try:
            candidate, protocol = await asyncio.wait_for(
                original_relayed_candidate(**attempt), budget
            )
        except asyncio.CancelledError:
            if glog is not None:
                glog.fail(
                    "turn-unreachable",
                    server.url,
                    f"TURN server unreachable: no answer from {server.url} before aioice's "
                    f"{AIOICE_GATHER_DEADLINE:g}s gathering deadline",
                )
            raise
        except Exception as exc:
            last = exc
            kind, message = describe_turn_error(exc, server, budget)
            log.info("%s", message)
            if glog is not None:
                glog.fail(kind, server.url, message)
            continue
        # tags read by rtclab.ice.inspect: which URL/transport this relay really uses
        setattr(protocol, "rtclab_relay_protocol", server.relay_protocol)  # noqa: B010
        setattr(protocol, "rtclab_server_url", server.url)  # noqa: B010
        if glog is not None:
            glog._server_candidate(candidate, server)
            _watch_relay_errors(protocol, server, glog)
        if config.turn_prepermit:
            await turn_prepermit(protocol, candidate, made[0] if made else protocol)
            hold_early_channel_data(protocol)
        return candidate, protocol
    if last is None:
        last = TimeoutError("no time left for the TURN servers")
    raise last


def _watch_relay_errors(protocol: Any, server: ServerUrl, glog: GatheringLog) -> None:
    """Name failed sends on the relay (e.g. a 403 to ChannelBind) instead of dropping them.

    aioice only logs a failed ChannelBind at debug level; coturn without
    ``allow-loopback-peers`` fails exactly there.
    """

    def error_received(exc: Exception) -> None:
        if isinstance(exc, stun.TransactionFailed):
            code, reason = exc.response.attributes.get("ERROR-CODE", (0, ""))
            if code == 403:
                glog.fail(
                    "turn-forbidden",
                    server.url,
                    f"TURN 403 forbidden from {server.url} when relaying to a peer: {reason} "
                    "(coturn refuses 127.x peers unless allow-loopback-peers is set)",
                )
            else:
                glog.fail("turn-error", server.url, f"TURN error {code} {reason} from {server.url}")

    on_error_received(protocol, error_received)


# --- STUN ----------------------------------------------------------------------------------


async def _server_reflexive_candidate(protocol: Any, stun_server: tuple[str, int]) -> Any:
    ctx = _context.get()
    if ctx is None or ctx.config is None:
        return await original_server_reflexive_candidate(protocol, stun_server)
    glog = ctx.log
    if glog is not None:
        glog._mark_host_bound()
    servers = _servers(ctx.config, turn=False) or [
        parse_server_url(f"stun:{stun_server[0]}:{stun_server[1]}")
    ]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + AIOICE_GATHER_DEADLINE - 0.3
    last: BaseException | None = None
    for index, server in enumerate(servers):
        remaining = deadline - loop.time()
        if remaining <= 0.05:
            break
        budget = min(ctx.config.turn_timeout, remaining / (len(servers) - index))
        try:
            result = await asyncio.wait_for(
                original_server_reflexive_candidate(protocol, (server.host, server.port)),
                budget,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            last = exc
            timed_out = isinstance(exc, (stun.TransactionTimeout, asyncio.TimeoutError))
            kind = "stun-unreachable" if timed_out or isinstance(exc, OSError) else "stun-error"
            message = (
                f"STUN server unreachable: no answer from {server.url} within {budget:g}s"
                if timed_out
                else f"STUN query to {server.url} failed: {type(exc).__name__}: {exc}"
            )
            if glog is not None:
                glog.fail(kind, server.url, message)
            continue
        if glog is not None:
            glog._server_candidate(result[0], server)
        return result
    raise last if last is not None else TimeoutError("no time left for the STUN servers")
