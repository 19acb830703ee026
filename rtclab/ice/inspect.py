"""Gathered candidates and the selected pair, read from aioice (what aiortc's getStats lacks).

aiortc 1.16 reports no ``candidate-pair`` / ``local-candidate`` stats, so the ICE path has to
be read from the aioice :class:`aioice.Connection` behind each ``RTCIceTransport``:

- ``RTCRtpSender.transport`` / ``RTCRtpReceiver.transport`` / ``RTCSctpTransport.transport``
  (public) -> ``RTCDtlsTransport.transport`` (public) -> the ``aioice.Connection``
  (private: :func:`rtclab._compat.aiortc.ice_transport_connection`);
- its nominated pair (private: :func:`rtclab._compat.aioice.nominated_pair`);
- ``aioice.Connection.turn_transport`` / ``turn_ssl`` (public attributes set from the
  constructor) for the transport used to reach the TURN server.

The private reads live in :mod:`rtclab._compat` and degrade to "unknown" (``None`` / ``[]``)
on an aiortc/aioice that lacks them, instead of raising in the middle of a poll.

The candidate frames (:func:`candidate_rows`, :func:`candidates_frame`,
:func:`selected_pairs_frame`) are what the WebRTC samples' trickle-ice page shows: every
local and remote candidate with its timing, and the selected pair over time.

Verified against aioice 0.13 / aiortc 1.16.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from .._compat.aioice import connection_protocols, nominated_pair
from .._compat.aiortc import ice_transport_connection
from ..model import PATH_COLUMNS, CandidateInfo, CandidatePair

if TYPE_CHECKING:
    import pandas as pd

    from .gathering import GatheringLog

_T = TypeVar("_T")

__all__ = [
    "CANDIDATE_COLUMNS",
    "PAIR_COLUMNS",
    "CandidateInfo",
    "CandidatePair",
    "candidate_info",
    "candidate_rows",
    "candidates_frame",
    "dtls_transports",
    "ice_connections",
    "local_candidates",
    "remote_candidates",
    "selected_candidate_pair",
    "selected_pairs_frame",
]

#: Columns of the candidates frame, one row per (peer, remote, side, candidate).
CANDIDATE_COLUMNS = [
    "peer",
    "remote",
    "side",  # local | remote
    "type",  # host | srflx | prflx | relay
    "protocol",
    "address",
    "port",
    "priority",
    "foundation",
    "component",
    "related_address",
    "related_port",
    "t_ms",  # local: since gathering began; remote: when it reached us (same origin)
    "selected",
    "relay_protocol",  # how we reach the TURN server, for our relay candidates
    "url",  # the STUN/TURN URL that produced a srflx/relay candidate
]

#: Columns of the selected-pairs frame (from the stats samples).
PAIR_COLUMNS = ["t", "elapsed_s", "peer", "remote", *PATH_COLUMNS]


def candidate_info(candidate: Any, url: str | None = None) -> CandidateInfo:
    """Copy an aioice ``Candidate`` (or anything with the same attributes) into a CandidateInfo;
    ``url``: the server that produced it, if known."""
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
        url=url,
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
        connection = ice_transport_connection(ice_transport)
        if connection is not None:
            connections.append(connection)
    return _dedupe(connections)


def selected_candidate_pair(pc: Any) -> CandidatePair | None:
    """The nominated pair for component 1 of the first connection that has one, else ``None``.

    With bundle (aiortc's default policy) there is a single connection; without, the first
    m-line's connection is reported — they normally share the same path on a lab network.
    """
    for connection in ice_connections(pc):
        pair = nominated_pair(connection, 1)
        if pair is None:
            continue
        local = getattr(pair, "local_candidate", None)
        remote = getattr(pair, "remote_candidate", None)
        if local is None or remote is None:
            continue
        tagged_url = getattr(getattr(pair, "protocol", None), "rtclab_server_url", None)
        local_info = candidate_info(local, tagged_url if isinstance(tagged_url, str) else None)
        relay_protocol: str | None = None
        if local_info.type == "relay":
            # set by rtclab.ice.gathering on the protocol of the TURN URL actually used
            tagged = getattr(getattr(pair, "protocol", None), "rtclab_relay_protocol", None)
            if isinstance(tagged, str):
                relay_protocol = tagged
            elif getattr(connection, "turn_ssl", False):
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
    """Candidates gathered locally, across all connections of ``pc`` (empty before gathering);
    a relay candidate carries the URL of its TURN server."""
    urls: dict[tuple[str, str, int], str] = {}
    for connection in ice_connections(pc):
        for protocol in connection_protocols(connection):
            url = getattr(protocol, "rtclab_server_url", None)
            candidate = getattr(protocol, "local_candidate", None)
            if isinstance(url, str) and candidate is not None:
                urls[_key(candidate_info(candidate))] = url
    return [
        dataclasses.replace(c, url=urls.get(_key(c))) if _key(c) in urls else c
        for c in _candidates(pc, "local_candidates")
    ]


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


def candidate_rows(
    pc: Any, *, peer: str = "", remote: str = "", log: GatheringLog | None = None
) -> list[dict[str, Any]]:
    """Rows (see :data:`CANDIDATE_COLUMNS`) for every local and remote candidate of ``pc``.

    ``log`` (the connection's :class:`~rtclab.ice.gathering.GatheringLog`) supplies times
    and the server behind each server candidate; without it those columns are empty.
    """
    pair = selected_candidate_pair(pc)
    selected_local = pair.local if pair is not None else None
    selected_remote = pair.remote if pair is not None else None
    relay_tags: dict[tuple[str, str, int], tuple[str | None, str | None]] = {}
    for connection in ice_connections(pc):
        for protocol in connection_protocols(connection):
            candidate = getattr(protocol, "local_candidate", None)
            if candidate is not None:
                relay_tags[_key(candidate_info(candidate))] = (
                    getattr(protocol, "rtclab_relay_protocol", None),
                    getattr(protocol, "rtclab_server_url", None),
                )
    rows: list[dict[str, Any]] = []
    for side, infos, chosen in (
        ("local", local_candidates(pc), selected_local),
        ("remote", remote_candidates(pc), selected_remote),
    ):
        for info in infos:
            key = _key(info)
            t_ms: float | None = None
            relay_protocol: str | None = None
            url: str | None = None
            if side == "local":
                relay_protocol, url = relay_tags.get(key, (None, None))
                if log is not None:
                    t_ms = log.local_times.get(key)
                    url = url or log.servers.get(key)
                    relay_protocol = relay_protocol or log.relay_protocols.get(key)
            elif log is not None:
                t_ms = log.remote_ms(info)
            rows.append(
                {
                    "peer": peer,
                    "remote": remote,
                    "side": side,
                    "type": info.type,
                    "protocol": info.protocol,
                    "address": info.address,
                    "port": info.port,
                    "priority": info.priority,
                    "foundation": info.foundation,
                    "component": info.component,
                    "related_address": info.related_address,
                    "related_port": info.related_port,
                    "t_ms": t_ms,
                    "selected": chosen is not None and _key(chosen) == key,
                    "relay_protocol": relay_protocol if info.type == "relay" else None,
                    "url": url,
                }
            )
    return rows


def candidates_frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """A DataFrame of candidate rows with stable columns and dtypes (also when empty)."""
    import pandas as pd

    frame = pd.DataFrame(list(rows), columns=CANDIDATE_COLUMNS)
    for column in ("port", "priority", "component"):
        frame[column] = pd.to_numeric(frame[column]).astype("Int64")
    frame["related_port"] = pd.to_numeric(frame["related_port"]).astype("Int64")
    frame["t_ms"] = pd.to_numeric(frame["t_ms"]).astype("float64")
    frame["selected"] = frame["selected"].astype(bool)
    return frame  # type: ignore[no-any-return]


def selected_pairs_frame(samples: pd.DataFrame, *, changes_only: bool = True) -> pd.DataFrame:
    """The selected pair over time, from the stats samples (one row per peer, remote, sample).

    With ``changes_only`` only the first sample and each change of path are kept: a pair
    that stays put is one row, a switch (e.g. relay -> host) is visible at once.
    """
    import pandas as pd

    if samples.empty or "local_candidate_type" not in samples:
        return pd.DataFrame(columns=PAIR_COLUMNS)  # type: ignore[no-any-return]
    rows = samples[[c for c in PAIR_COLUMNS if c in samples.columns]]
    rows = rows.dropna(subset=["local_candidate_type"])
    rows = rows.drop_duplicates(subset=["t", "peer", "remote"]).sort_values("t")
    if changes_only and not rows.empty:
        path = ["local_candidate_type", "remote_candidate_type", "protocol", "relay_protocol",
                "local_address", "remote_address"]  # fmt: skip
        signature = rows[path].astype(object).fillna("-").astype(str).agg("|".join, axis=1)
        previous = signature.groupby([rows["peer"], rows["remote"]]).shift()
        rows = rows[signature != previous]
    return rows.reset_index(drop=True).reindex(columns=PAIR_COLUMNS)  # type: ignore[no-any-return]


def _key(info: CandidateInfo) -> tuple[str, str, int]:
    return (info.protocol, info.address, info.port)
