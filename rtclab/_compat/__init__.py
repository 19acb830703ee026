"""The one place rtclab leans on aiortc's and aioice's internals (the bottom layer: it
imports nothing else from rtclab).

:mod:`.aiortc` and :mod:`.aioice` hold one named function per private read or replaced
function, :mod:`.loop` the replaced ``create_datagram_endpoint`` and ``create_connection``.
:func:`probe` checks, without a connection, that every internal they rely on is still
there: run ``pytest tests/test_compat.py`` before widening the pinned aiortc/aioice range.
"""

from __future__ import annotations

import asyncio.base_events
import dis
import inspect
import logging
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Names, not modules: ``rtclab._compat.aiortc``/``.aioice`` would shadow ``aiortc``/``aioice``.
from aioice import Connection
from aioice.ice import CandidatePair, StunProtocol
from aioice.turn import (
    TurnClientTcpProtocol,
    TurnClientUdpProtocol,
    TurnTransport,
    create_turn_endpoint,
)
from aiortc import (
    RTCDtlsTransport,
    RTCIceTransport,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSctpTransport,
)
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtcrtpreceiver import StreamStatistics

from .aioice import (
    original_get_component_candidates,
    original_get_host_addresses,
    original_relayed_candidate,
    original_server_reflexive_candidate,
)

__all__ = ["HOOKS", "Hook", "probe", "warn_missing_hooks"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hook:
    """One internal of aiortc/aioice that a :mod:`rtclab._compat` function relies on."""

    name: str  # what must exist, e.g. "aiortc RTCRtpSender.__encoder"
    used_by: str  # the _compat function(s) and what breaks without it
    check: Callable[[], bool]


def _code_objects(obj: Any) -> list[types.CodeType]:
    """Code of a function, or of every function of a class, nested code included."""
    if isinstance(obj, type):
        funcs = [f for f in vars(obj).values() if callable(f) or isinstance(f, property)]
    else:
        funcs = [obj]
    out: list[types.CodeType] = []
    for func in funcs:
        if isinstance(func, property):
            func = func.fget
        code = getattr(inspect.unwrap(func), "__code__", None) if func is not None else None
        stack = [code] if isinstance(code, types.CodeType) else []
        while stack:
            current = stack.pop()
            out.append(current)
            stack.extend(c for c in current.co_consts if isinstance(c, types.CodeType))
    return out


def _refers(obj: Any, name: str) -> bool:
    """``obj``'s code looks ``name`` up (a global, an attribute or a method)."""
    return any(name in code.co_names for code in _code_objects(obj))


def _stores(cls: type, attr: str) -> bool:
    """Some ``__init__`` in ``cls``'s MRO assigns ``self.<attr>`` (mangled names as stored):
    how an instance attribute is found without building an instance."""
    for klass in cls.__mro__:
        code = getattr(vars(klass).get("__init__"), "__code__", None)
        if isinstance(code, types.CodeType) and any(
            i.opname == "STORE_ATTR" and i.argval == attr for i in dis.get_instructions(code)
        ):
            return True
    return False


def _field(cls: type, name: str) -> bool:
    """An attribute every instance has: set in ``__init__`` or a property of the class."""
    return isinstance(inspect.getattr_static(cls, name, None), property) or _stores(cls, name)


def _params(func: Any) -> set[str]:
    return set(inspect.signature(func).parameters)


def _settable_property(cls: type, name: str) -> bool:
    prop = inspect.getattr_static(cls, name, None)
    return isinstance(prop, property) and prop.fset is not None


def _encoders_keep_target() -> bool:
    stored = all(
        _stores(cls, f"_{cls.__name__}__target_bitrate")
        and _settable_property(cls, "target_bitrate")
        for cls in (Vp8Encoder, H264Encoder)
    )
    return stored and _refers(RTCRtpSender, "target_bitrate")


def _async_method(cls: type, name: str, *params: str) -> Any | None:
    """``cls.<name>`` if it is a coroutine function taking exactly ``self, *params``."""
    method = getattr(cls, name, None)
    if inspect.iscoroutinefunction(method) and _params(method) == {"self", *params}:
        return method
    return None


def _rtp_hook_point() -> bool:
    handle = _async_method(RTCRtpReceiver, "_handle_rtp_packet", "packet", "arrival_time_ms")
    return handle is not None and _refers(RTCDtlsTransport, "_handle_rtp_packet")


def _receiver_sends_rtcp_through_one_method() -> bool:
    return _async_method(RTCRtpReceiver, "_send_rtcp", "packet") is not None and all(
        _refers(getattr(RTCRtpReceiver, name), "_send_rtcp")
        for name in ("_handle_rtp_packet", "_send_rtcp_nack", "_send_rtcp_pli")
    )


def _sender_feedback_points() -> bool:
    handle = _async_method(RTCRtpSender, "_handle_rtcp_packet", "packet")
    return (
        handle is not None
        and _refers(RTCDtlsTransport, "_handle_rtcp_packet")
        and _async_method(RTCRtpSender, "_retransmit", "sequence_number") is not None
        and _refers(handle, "_retransmit")
        and _stores(RTCRtpSender, "_RTCRtpSender__rtp_history")
    )


def _encoded_frame_point() -> bool:
    return (
        _async_method(RTCRtpSender, "_next_encoded_frame", "codec") is not None
        and _refers(RTCRtpSender._run_rtp, "_next_encoded_frame")
        and _refers(RTCRtpSender._run_rtp, "payloads")
    )


def _receiver_estimates_and_sends_remb() -> bool:
    """aiortc's receiver keeps its estimator in ``__remote_bitrate_estimator``, feeds it from
    ``_handle_rtp_packet`` only when set, and sends REMB from its ``__rtcp_ssrc`` through
    ``_send_rtcp``: what :func:`.aiortc.replace_remote_bitrate_estimator` turns off and redoes."""
    handle = RTCRtpReceiver._handle_rtp_packet
    return (
        _rtp_hook_point()
        and all(
            _stores(RTCRtpReceiver, f"_RTCRtpReceiver__{name}")
            for name in ("remote_bitrate_estimator", "rtcp_ssrc")
        )
        and _stores(RTCRtpReceiver, "_enabled")
        and _refers(handle, "_RTCRtpReceiver__remote_bitrate_estimator")
        and _refers(handle, "_send_rtcp")
        and _params(RTCRtpReceiver._send_rtcp) == {"self", "packet"}
    )


def _turn_clients_keep_tables() -> bool:
    classes = (TurnClientUdpProtocol, TurnClientTcpProtocol)
    return all(
        all(_stores(c, a) for a in ("peer_to_channel", "channel_to_peer", "peer_connect_waiters"))
        and callable(getattr(c, "request_with_retry", None))
        and callable(getattr(c, "datagram_received", None))
        for c in classes
    ) and _refers(TurnClientTcpProtocol.data_received, "datagram_received")


_RELAY_KWARGS = {
    "protocol_factory",
    "turn_server",
    "turn_username",
    "turn_password",
    "turn_ssl",
    "turn_transport",
}

HOOKS: tuple[Hook, ...] = (
    Hook(
        "aiortc RTCRtpSender.__encoder",
        "sender_encoder, cap_encoder_bitrate: Peer.set_max_bitrate does nothing",
        lambda: _stores(RTCRtpSender, "_RTCRtpSender__encoder"),
    ),
    Hook(
        "aiortc Vp8Encoder/H264Encoder.__target_bitrate and a settable target_bitrate",
        "cap_encoder_bitrate: Peer.set_max_bitrate does nothing",
        _encoders_keep_target,
    ),
    Hook(
        "aiortc RTCRtpReceiver._handle_rtp_packet(packet, arrival_time_ms), called by "
        "RTCDtlsTransport",
        "on_rtp_packet: inbound bytes_received and bitrate stay empty",
        _rtp_hook_point,
    ),
    Hook(
        "aiortc RTCRtpReceiver._send_rtcp(packet), called for RR, NACK, PLI and REMB",
        "on_rtcp_sent: inbound nack_count, pli_count and estimate_kbps stay empty",
        _receiver_sends_rtcp_through_one_method,
    ),
    Hook(
        "aiortc RTCRtpSender._handle_rtcp_packet(packet), called by RTCDtlsTransport; "
        "_retransmit(sequence_number) and __rtp_history",
        "on_rtcp_received, on_retransmit: outbound nack_count, pli_count, fir_count, "
        "available_outgoing_bitrate_kbps and retransmitted_packets_sent stay empty",
        _sender_feedback_points,
    ),
    Hook(
        "aiortc RTCRtpSender._next_encoded_frame(codec), called by _run_rtp",
        "on_encoded_frame: keyframes_encoded stays empty",
        _encoded_frame_point,
    ),
    Hook(
        "aiortc RTCRtpReceiver.__jitter_buffer._prefetch",
        "receiver_jitter_buffer_prefetch: mos leaves out the jitter buffer's delay",
        lambda: (
            _stores(RTCRtpReceiver, "_RTCRtpReceiver__jitter_buffer")
            and _stores(JitterBuffer, "_prefetch")
        ),
    ),
    Hook(
        "aiortc RTCRtpReceiver.__remote_bitrate_estimator / __rtcp_ssrc / _enabled / "
        "_send_rtcp(packet), used by _handle_rtp_packet",
        "replace_remote_bitrate_estimator: Peer(estimator=...) leaves aiortc's estimator on",
        _receiver_estimates_and_sends_remb,
    ),
    Hook(
        "aiortc RTCRtpReceiver.__remote_streams / __rtx_ssrc, StreamStatistics "
        "packets_received / packets_lost / jitter",
        "receiver_streams, receiver_rtx_ssrcs: RTX packets skew inbound loss and jitter",
        lambda: (
            _stores(RTCRtpReceiver, "_RTCRtpReceiver__remote_streams")
            and _stores(RTCRtpReceiver, "_RTCRtpReceiver__rtx_ssrc")
            and all(
                _field(StreamStatistics, name)
                for name in ("packets_received", "packets_lost", "jitter")
            )
        ),
    ),
    Hook(
        "aiortc RTCRtpTransceiver._codecs",
        "transceiver_codecs: jitter_ms stays empty (no RTP clock rate)",
        lambda: _stores(RTCRtpTransceiver, "_codecs"),
    ),
    Hook(
        "aiortc RTCDtlsTransport._get_stats()",
        "dtls_transport_stats: transport byte counters and liveness (lost/recovered) blind",
        lambda: callable(getattr(RTCDtlsTransport, "_get_stats", None)),
    ),
    Hook(
        "aiortc RTCDtlsTransport.__rx_bytes",
        "dtls_bytes_received: liveness (lost/recovered) blind",
        lambda: _stores(RTCDtlsTransport, "_RTCDtlsTransport__rx_bytes"),
    ),
    Hook(
        "aiortc RTCIceTransport._connection",
        "ice_transport_connection: no candidates, no selected pair",
        lambda: _stores(RTCIceTransport, "_connection"),
    ),
    Hook(
        "aiortc RTCSctpTransport._srtt",
        "sctp_rtt_ms: no RTT for data-channel-only connections",
        lambda: _stores(RTCSctpTransport, "_srtt"),
    ),
    Hook(
        "aioice Connection._nominated, CandidatePair.local_candidate / remote_candidate",
        "nominated_pair: no selected pair (path columns empty)",
        lambda: (
            _stores(Connection, "_nominated")
            and all(_field(CandidatePair, n) for n in ("local_candidate", "remote_candidate"))
        ),
    ),
    Hook(
        "aioice Connection._protocols",
        "connection_protocols: candidates lose their TURN URL and relay protocol",
        lambda: _stores(Connection, "_protocols"),
    ),
    Hook(
        "aioice.ice.get_host_addresses(use_ipv4, use_ipv6), looked up by "
        "Connection.gather_candidates",
        "replace_gathering_functions: IceConfig.interfaces ignored (gathers on every interface)",
        lambda: (
            _params(original_get_host_addresses) == {"use_ipv4", "use_ipv6"}
            and _refers(Connection.gather_candidates, "get_host_addresses")
        ),
    ),
    Hook(
        "aioice Connection.get_component_candidates(component, addresses, timeout), called "
        "by Connection.gather_candidates; Connection._transport_policy",
        "replace_gathering_functions: only the first STUN and TURN URL, failures unnamed",
        lambda: (
            _params(original_get_component_candidates)
            == {"self", "component", "addresses", "timeout"}
            and _refers(Connection.gather_candidates, "get_component_candidates")
            and _stores(Connection, "_transport_policy")
        ),
    ),
    Hook(
        "aioice.ice.relayed_candidate(**turn kwargs) and server_reflexive_candidate(protocol, "
        "stun_server), StunProtocol(connection).local_candidate",
        "gathering from every server: no srflx/relay candidates through rtclab",
        lambda: (
            _RELAY_KWARGS <= _params(original_relayed_candidate)
            and _params(original_server_reflexive_candidate) == {"protocol", "stun_server"}
            and _refers(original_get_component_candidates, "StunProtocol")
            and _refers(original_get_component_candidates, "local_candidate")
        ),
    ),
    Hook(
        "aioice TurnTransport.__inner_protocol",
        "turn_client, turn_prepermit, hold_early_channel_data: relay paths connect ~0.5 s later",
        lambda: _stores(TurnTransport, "_TurnTransport__inner_protocol"),
    ),
    Hook(
        "aioice TurnClient*Protocol peer_to_channel / channel_to_peer / peer_connect_waiters, "
        "request_with_retry, datagram_received",
        "turn_prepermit, hold_early_channel_data: relay paths connect ~0.5 s later",
        _turn_clients_keep_tables,
    ),
    Hook(
        "aioice StunProtocol.error_received and .receiver, called by TurnTransport",
        "on_error_received: TURN 403s on ChannelBind go unnamed",
        lambda: (
            callable(getattr(StunProtocol, "error_received", None))
            and _stores(StunProtocol, "receiver")
            and _refers(TurnTransport, "error_received")
        ),
    ),
    Hook(
        "aioice opens UDP sockets with loop.create_datagram_endpoint",
        "route_sockets: emulated networks get real UDP sockets",
        lambda: (
            _refers(original_get_component_candidates, "create_datagram_endpoint")
            and _refers(create_turn_endpoint, "create_datagram_endpoint")
        ),
    ),
    Hook(
        "aioice opens TURN over TCP/TLS with loop.create_connection; asyncio's start_tls "
        "upgrades a transport marked _start_tls_compatible",
        "route_sockets: no TURN/TCP or TURN/TLS on emulated networks",
        lambda: (
            _refers(create_turn_endpoint, "create_connection")
            and "_start_tls_compatible"
            in asyncio.base_events.BaseEventLoop.start_tls.__code__.co_consts
        ),
    ),
)


def probe() -> list[str]:
    """``"<internal> (<what uses it>)"`` for every hook missing on the installed aiortc/aioice;
    ``[]`` when all are there. Reads classes and code only: no connection, no socket."""
    missing: list[str] = []
    for hook in HOOKS:
        try:
            ok = bool(hook.check())
        except Exception as exc:  # an internal that moved can break the check itself
            log.debug("compat probe %s: %r", hook.name, exc)
            ok = False
        if not ok:
            missing.append(f"{hook.name} ({hook.used_by})")
    return missing


def warn_missing_hooks() -> list[str]:
    """Warn (``warnings.warn`` and the log) when :func:`probe` finds hooks missing: on an
    aiortc/aioice outside the tested range some stats columns would silently stay empty."""
    missing = probe()
    if missing:
        message = (
            "rtclab: this aiortc/aioice lacks internals rtclab reads; affected features "
            "degrade (install the versions pinned in rtclab's pyproject.toml): "
            + "; ".join(missing)
        )
        log.warning("%s", message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)
    return missing
