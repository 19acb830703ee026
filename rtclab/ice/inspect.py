"""Gathered candidates and the selected pair, read from aioice (what aiortc's getStats lacks).

aiortc 1.16 reports no ``candidate-pair`` / ``local-candidate`` stats, so the ICE path has to
be read from the aioice :class:`aioice.Connection` behind each ``RTCIceTransport``. That needs
private attributes; every one is read with ``getattr`` and a default so that an aiortc/aioice
upgrade degrades to "unknown" (``None`` / ``[]``) instead of raising in the middle of a poll:

- ``RTCRtpSender.transport`` / ``RTCRtpReceiver.transport`` / ``RTCSctpTransport.transport``
  (public) -> ``RTCDtlsTransport.transport`` (public) -> ``RTCIceTransport._connection``
  (private, aiortc) -> ``aioice.Connection``;
- ``aioice.Connection._nominated`` (private): ``{component: CandidatePair}``, filled when
  the controlling side nominates a pair (both sides see it once the check completes);
- ``aioice.Connection.turn_transport`` / ``turn_ssl`` (public attributes set from the
  constructor) for the transport used to reach the TURN server.

Verified against aioice 0.13 / aiortc 1.16.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

_T = TypeVar("_T")

__all__ = [
    "CandidateInfo",
    "CandidatePair",
    "candidate_info",
    "dtls_transports",
    "ice_connections",
    "local_candidates",
    "remote_candidates",
    "selected_candidate_pair",
]


@dataclass(frozen=True)
class CandidateInfo:
    """One ICE candidate as plain data (an aioice ``Candidate`` is mutable and has no ``==``)."""

    foundation: str
    component: int
    protocol: str
    priority: int
    address: str
    port: int
    type: str
    related_address: str | None = None
    related_port: int | None = None

    @property
    def address_port(self) -> str:
        """``"ip:port"`` (IPv6 in brackets), the form used in the samples frame."""
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class CandidatePair:
    """The pair ICE selected: which path the media and data actually take.

    ``protocol`` is the transport between the two candidates (what the remote sees);
    ``relay_protocol`` is how *we* reach our TURN server (``udp``/``tcp``/``tls``) when the
    local candidate is a relay, else ``None`` — the two differ for TURN over TCP/TLS.
    """

    local: CandidateInfo
    remote: CandidateInfo
    protocol: str
    relay_protocol: str | None = None

    @property
    def local_candidate_type(self) -> str:
        return self.local.type

    @property
    def remote_candidate_type(self) -> str:
        return self.remote.type

    @property
    def local_address(self) -> str:
        return self.local.address_port

    @property
    def remote_address(self) -> str:
        return self.remote.address_port


def candidate_info(candidate: Any) -> CandidateInfo:
    """Copy an aioice ``Candidate`` (or anything with the same attributes) into a CandidateInfo."""
    related_port = getattr(candidate, "related_port", None)
    return CandidateInfo(
        foundation=str(getattr(candidate, "foundation", "")),
        component=int(getattr(candidate, "component", 1)),
        protocol=str(getattr(candidate, "transport", "udp")).lower(),
        priority=int(getattr(candidate, "priority", 0)),
        address=str(getattr(candidate, "host", "")),
        port=int(getattr(candidate, "port", 0)),
        type=str(getattr(candidate, "type", "")),
        related_address=getattr(candidate, "related_address", None),
        related_port=int(related_port) if related_port is not None else None,
    )


def _dtls_transports(pc: Any) -> Iterator[Any]:
    """Every RTCDtlsTransport reachable from ``pc`` (duplicates included; bundle shares one)."""
    for transceiver in _safe_list(pc, "getTransceivers"):
        for end in (getattr(transceiver, "sender", None), getattr(transceiver, "receiver", None)):
            dtls = getattr(end, "transport", None)
            if dtls is not None:
                yield dtls
    sctp = getattr(pc, "sctp", None)
    dtls = getattr(sctp, "transport", None)
    if dtls is not None:
        yield dtls


def dtls_transports(pc: Any) -> list[Any]:
    """Distinct ``RTCDtlsTransport`` objects of ``pc``, in transceiver order, sctp last."""
    return _dedupe(_dtls_transports(pc))


def ice_connections(pc: Any) -> list[Any]:
    """Distinct ``aioice.Connection`` objects of ``pc``: one with bundle, else one per m-line."""
    connections: list[Any] = []
    for dtls in _dtls_transports(pc):
        ice_transport = getattr(dtls, "transport", None)
        connection = getattr(ice_transport, "_connection", None)
        if connection is not None:
            connections.append(connection)
    return _dedupe(connections)


def selected_candidate_pair(pc: Any) -> CandidatePair | None:
    """The nominated pair for component 1 of the first connection that has one, else ``None``.

    With bundle (aiortc's default policy) there is a single connection; without, the first
    m-line's connection is reported — they normally share the same path on a lab network.
    """
    for connection in ice_connections(pc):
        nominated = getattr(connection, "_nominated", None)
        if not isinstance(nominated, dict):
            continue
        pair = nominated.get(1)
        if pair is None:
            continue
        local = getattr(pair, "local_candidate", None)
        remote = getattr(pair, "remote_candidate", None)
        if local is None or remote is None:
            continue
        local_info = candidate_info(local)
        relay_protocol: str | None = None
        if local_info.type == "relay":
            if getattr(connection, "turn_ssl", False):
                relay_protocol = "tls"
            else:
                relay_protocol = str(getattr(connection, "turn_transport", "udp")).lower()
        return CandidatePair(
            local=local_info,
            remote=candidate_info(remote),
            protocol=local_info.protocol,
            relay_protocol=relay_protocol,
        )
    return None


def local_candidates(pc: Any) -> list[CandidateInfo]:
    """Candidates gathered locally, across all connections of ``pc`` (empty before gathering)."""
    return _candidates(pc, "local_candidates")


def remote_candidates(pc: Any) -> list[CandidateInfo]:
    """Candidates received from the remote (from its SDP or trickled), across all connections."""
    return _candidates(pc, "remote_candidates")


def _candidates(pc: Any, attribute: str) -> list[CandidateInfo]:
    result: list[CandidateInfo] = []
    for connection in ice_connections(pc):
        try:
            candidates = list(getattr(connection, attribute, []) or [])
        except Exception:  # a property of a private object: never let it break a poll
            continue
        result.extend(candidate_info(c) for c in candidates)
    return _dedupe(result, key=lambda c: c)


def _safe_list(obj: Any, method: str) -> list[Any]:
    try:
        return list(getattr(obj, method)())
    except Exception:
        return []


def _dedupe(items: Iterable[_T], key: Callable[[_T], Hashable] = id) -> list[_T]:
    """Keep the first of each item; by identity by default (aiortc objects define no ``==``)."""
    seen: set[Hashable] = set()
    result: list[_T] = []
    for item in items:
        k = key(item)
        if k not in seen:
            seen.add(k)
            result.append(item)
    return result
