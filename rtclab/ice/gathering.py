"""ICE gathering as browsers do it: every STUN and TURN server at once, each failure named.

aiortc hands aioice only the *first* STUN and the first TURN URL; aioice runs those queries,
waits for all of them, and drops any exception without a word: a TURN 401, an unreachable
server or an untrusted certificate all look like "no relay candidate". rtclab replaces
aioice's per-component gathering (``Connection.get_component_candidates``, through
:mod:`rtclab._compat.aioice`, with ``aioice.ice.get_host_addresses`` for the interfaces):

- host candidates on the peer's interfaces (:class:`~rtclab.ice.config.IceConfig`
  ``interfaces``, or the emulated host's address);
- one server-reflexive query per STUN URL and host socket, one allocation per TURN URL
  (``turn:`` over UDP or TCP, ``turns:`` over TLS trusting ``IceConfig.tls_ca_file``), all in
  parallel, each bounded by ``IceConfig.turn_timeout``: one srflx candidate per distinct
  mapped address and one relay candidate per live TURN URL, each tagged with its URL;
- gathering completes when every query has settled, or ``IceConfig.gathering_grace`` after
  each kind of server candidate (srflx, relay) has its first answer (or all its servers
  failed): a dead server costs nothing but its own timeout. Its failure is still named when
  that timeout ends; a server that answers after gathering completed is logged
  (``ice-server-late``) and its allocation released.

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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aioice import stun
from aioice.candidate import candidate_foundation, candidate_priority

from .._compat.aioice import (
    add_connection_protocol,
    bind_host_protocols,
    hold_early_channel_data,
    on_error_received,
    original_get_host_addresses,
    original_relayed_candidate,
    original_server_reflexive_candidate,
    relay_only,
    replace_gathering_functions,
    stun_protocol_factory,
    turn_prepermit,
)
from .gathering_log import CandidateKey, EventCallback, GatheringLog, IceFailure, candidate_key

if TYPE_CHECKING:
    from .config import IceConfig

__all__ = [
    "CandidateKey",
    "EventCallback",
    "GatheringLog",
    "IceFailure",
    "ServerUrl",
    "candidate_key",
    "gathering_on",
    "parse_server_url",
]

log = logging.getLogger(__name__)

#: Local preference of a relay candidate by how we reach its server (RFC 8445 §5.1.2.1;
#: browsers rank UDP over TCP over TLS the same way).
RELAY_PREFERENCE = {"udp": 65535, "tcp": 65534, "tls": 65533}


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
    replace_gathering_functions(_get_host_addresses, _component_candidates)


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


# --- servers ----------------------------------------------------------------------------------


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


@dataclass(eq=False)
class _Query:
    """One server asked for one candidate: a STUN binding from one host socket, or a TURN
    allocation. Its task returns ``(candidate, relay protocol or None, answered at ms)`` or
    ``None`` when the server failed (the failure is in the log by then)."""

    server: ServerUrl
    kind: str  # srflx | relay
    task: asyncio.Task[tuple[Any, Any, float] | None] = field(repr=False)

    def answered(self) -> bool:
        task = self.task
        return task.done() and not task.cancelled() and task.result() is not None


#: Queries still running after their gathering completed (a strong reference each).
_stragglers: set[_Query] = set()


async def _component_candidates(
    connection: Any, component: int, addresses: list[str], timeout: float
) -> list[Any] | None:
    """Every candidate of one component, from every configured server at once (the
    replacement of aioice's ``Connection.get_component_candidates``); ``None`` outside
    :func:`gathering_on` with a config, to leave the connection to aioice."""
    ctx = _context.get()
    if ctx is None or ctx.config is None:
        return None
    config, glog = ctx.config, ctx.log
    hosts = await bind_host_protocols(connection, component, addresses)
    if glog is not None:
        glog._mark_host_bound()
    candidates = [protocol.local_candidate for protocol in hosts]
    queries = _start_queries(connection, component, config, glog, hosts)
    if not queries:
        return candidates
    try:
        pending = await _settle(queries, config.gathering_grace, timeout)
    except asyncio.CancelledError:
        for query in queries:
            query.task.cancel()
        raise
    seen = {candidate_key(c) for c in candidates}
    for query in queries:  # in the order of the configuration, not of the answers
        if query.task in pending:
            _straggle(query, glog)
            continue
        result = query.task.result() if query.answered() else None
        if result is None:
            continue
        candidate, protocol, at_ms = result
        relay_protocol = query.server.relay_protocol if query.kind == "relay" else None
        if glog is not None:
            glog._server_candidate(candidate, query.server.url, relay_protocol, at_ms)
        key = candidate_key(candidate)
        if key in seen:  # a mapped address another STUN server reported too (RFC 8445 §5.1.3)
            continue
        seen.add(key)
        candidates.append(candidate)
        if protocol is not None:
            add_connection_protocol(connection, protocol)
    return candidates


def _start_queries(
    connection: Any,
    component: int,
    config: IceConfig,
    glog: GatheringLog | None,
    hosts: list[Any],
) -> list[_Query]:
    queries: list[_Query] = []
    for server in _servers(config, turn=False):
        for protocol in hosts:  # STUN over IPv4, as aioice
            if ipaddress.ip_address(protocol.local_candidate.host).version == 4:
                task = asyncio.create_task(_reflexive(protocol, server, config, glog))
                queries.append(_Query(server, "srflx", task))
    for server in _servers(config, turn=True):
        if not server.supported:
            if glog is not None:
                glog.fail(
                    "turn-unsupported", server.url, f"aioice cannot use {server.url} (skipped)"
                )
            continue
        task = asyncio.create_task(_allocate(connection, component, server, config, glog))
        queries.append(_Query(server, "relay", task))
    return queries


async def _settle(
    queries: list[_Query], grace: float, timeout: float
) -> set[asyncio.Task[tuple[Any, Any, float] | None]]:
    """Wait until every query settled, or ``grace`` after each kind (srflx, relay) has an
    answer or has nothing left to wait for, or ``timeout``; return the tasks still running."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pending = {query.task for query in queries}
    ready_at: float | None = None
    while pending:
        now = loop.time()
        if ready_at is None and all(
            any(q.answered() for q in queries if q.kind == kind)
            or all(q.task.done() for q in queries if q.kind == kind)
            for kind in {q.kind for q in queries}
        ):
            ready_at = now
        until = deadline if ready_at is None else min(deadline, ready_at + grace)
        if now >= until:
            break
        _, pending = await asyncio.wait(
            pending, timeout=until - now, return_when=asyncio.FIRST_COMPLETED
        )
    return pending


def _straggle(query: _Query, glog: GatheringLog | None) -> None:
    """Let a slow server finish on its own timeout: its failure is still named; an answer
    comes too late to be used (an allocation is released at once)."""
    _stragglers.add(query)

    def finished(task: asyncio.Task[tuple[Any, Any, float] | None]) -> None:
        _stragglers.discard(query)
        if not query.answered():
            return
        result = task.result()
        assert result is not None
        candidate, protocol, _ = result
        if protocol is not None:
            protocol.transport.close()
        if glog is not None:
            glog._late(query.server.url, f"{candidate.type} {candidate.host}:{candidate.port}")

    query.task.add_done_callback(finished)


async def _reflexive(
    protocol: Any, server: ServerUrl, config: IceConfig, glog: GatheringLog | None
) -> tuple[Any, Any, float] | None:
    budget = config.turn_timeout
    try:
        candidate, _ = await asyncio.wait_for(
            original_server_reflexive_candidate(protocol, (server.host, server.port)), budget
        )
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        timed_out = isinstance(exc, (stun.TransactionTimeout, asyncio.TimeoutError))
        kind = "stun-unreachable" if timed_out or isinstance(exc, OSError) else "stun-error"
        message = (
            f"STUN server unreachable: no answer from {server.url} within {budget:g}s"
            if timed_out
            else f"STUN query to {server.url} failed: {type(exc).__name__}: {exc}"
        )
        log.info("%s", message)
        if glog is not None:
            glog.fail(kind, server.url, message)
        return None
    return candidate, None, _now_ms(glog)


async def _allocate(
    connection: Any,
    component: int,
    server: ServerUrl,
    config: IceConfig,
    glog: GatheringLog | None,
) -> tuple[Any, Any, float] | None:
    budget = config.turn_timeout
    try:
        candidate, protocol = await asyncio.wait_for(
            original_relayed_candidate(
                component=component,
                hide_related_address=relay_only(connection),
                protocol_factory=stun_protocol_factory(connection),
                turn_server=(server.host, server.port),
                turn_username=server.username,
                turn_password=server.credential,
                turn_ssl=_ssl_for(config) if server.scheme == "turns" else False,  # type: ignore[arg-type]
                turn_transport=server.transport or "udp",
            ),
            budget,
        )
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        kind, message = describe_turn_error(exc, server, budget)
        log.info("%s", message)
        if glog is not None:
            glog.fail(kind, server.url, message)
        return None
    at_ms = _now_ms(glog)
    relay_protocol = server.relay_protocol
    # one foundation per way of reaching the server, UDP preferred (RFC 8445 §5.1.1.3)
    candidate.foundation = candidate_foundation("relay", relay_protocol, candidate.host)
    candidate.priority = candidate_priority(
        component, "relay", local_pref=RELAY_PREFERENCE.get(relay_protocol, 65533)
    )
    # tags read by rtclab.ice.inspect: which URL/transport this relay uses
    setattr(protocol, "rtclab_relay_protocol", relay_protocol)  # noqa: B010
    setattr(protocol, "rtclab_server_url", server.url)  # noqa: B010
    if glog is not None:
        _watch_relay_errors(protocol, server, glog)
    if config.turn_prepermit:
        await turn_prepermit(protocol, candidate, connection)
        hold_early_channel_data(protocol)
    return candidate, protocol, at_ms


def _now_ms(glog: GatheringLog | None) -> float:
    return round(glog.elapsed_ms(), 1) if glog is not None else 0.0


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
