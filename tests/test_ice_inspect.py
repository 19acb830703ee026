"""rtclab.ice.inspect against two real aiortc peer connections on loopback (and fakes)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import aioice.ice
import pytest
from aioice import Candidate
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack

from rtclab.ice.inspect import (
    CandidateInfo,
    ice_connections,
    local_candidates,
    remote_candidates,
    selected_candidate_pair,
)


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """aioice skips 127.0.0.1 and looks this global up at every gather: offer loopback only."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda *a, **k: ["127.0.0.1"])


@pytest.fixture
async def pcs(loopback_only: None) -> AsyncIterator[tuple[RTCPeerConnection, RTCPeerConnection]]:
    # iceServers=[]: with None aiortc silently adds Google's STUN server.
    a = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    b = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        yield a, b
    finally:
        await asyncio.gather(a.close(), b.close(), return_exceptions=True)


async def connect(a: RTCPeerConnection, b: RTCPeerConnection, timeout: float = 10.0) -> None:
    """Exchange complete descriptions directly (aiortc gathers before the SDP is ready)."""
    await a.setLocalDescription(await a.createOffer())
    await b.setRemoteDescription(a.localDescription)
    await b.setLocalDescription(await b.createAnswer())
    await a.setRemoteDescription(b.localDescription)

    async def connected() -> None:
        while not (a.connectionState == b.connectionState == "connected"):
            assert "failed" not in (a.connectionState, b.connectionState)
            await asyncio.sleep(0.02)

    await asyncio.wait_for(connected(), timeout)


async def wait_nominated(pc: RTCPeerConnection, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while selected_candidate_pair(pc) is None:
        assert loop.time() < deadline, "no nominated pair"
        await asyncio.sleep(0.02)


async def test_selected_pair_host_host_on_loopback_with_media_and_data(
    pcs: tuple[RTCPeerConnection, RTCPeerConnection],
) -> None:
    a, b = pcs
    a.addTrack(AudioStreamTrack())
    a.addTrack(VideoStreamTrack())
    # after addTrack: aiortc with MAX_BUNDLE closes the only transport on the answer otherwise
    a.createDataChannel("chat")
    assert selected_candidate_pair(a) is None
    assert local_candidates(a) == []

    await connect(a, b)
    await wait_nominated(a)
    await wait_nominated(b)

    for pc, other in ((a, b), (b, a)):
        assert len(ice_connections(pc)) == 1  # bundle: audio, video and sctp share one
        pair = selected_candidate_pair(pc)
        assert pair is not None
        assert (pair.local.type, pair.remote.type) == ("host", "host")
        assert pair.protocol == "udp"
        assert pair.relay_protocol is None
        assert pair.local.address == pair.remote.address == "127.0.0.1"
        assert pair.local.address_port == f"127.0.0.1:{pair.local.port}"
        assert pair.remote.address_port == f"127.0.0.1:{pair.remote.port}"
        locals_ = local_candidates(pc)
        assert locals_ and all(c.address == "127.0.0.1" and c.type == "host" for c in locals_)
        assert pair.local in locals_
        # what one side gathered is what the other received
        theirs = {(c.address, c.port) for c in local_candidates(other)}
        assert {(c.address, c.port) for c in remote_candidates(pc)} == theirs
        assert pair.remote.port in {port for _, port in theirs}

    pa, pb = selected_candidate_pair(a), selected_candidate_pair(b)
    assert pa is not None and pb is not None
    assert pa.local.address_port == pb.remote.address_port
    assert pa.remote.address_port == pb.local.address_port


async def test_data_only_connection_has_a_pair(
    pcs: tuple[RTCPeerConnection, RTCPeerConnection],
) -> None:
    a, b = pcs
    a.createDataChannel("chat")
    await connect(a, b)
    await wait_nominated(a)
    assert len(ice_connections(a)) == 1
    pair = selected_candidate_pair(a)
    assert pair is not None and pair.local.type == "host"


async def test_closed_pc_does_not_raise(pcs: tuple[RTCPeerConnection, RTCPeerConnection]) -> None:
    a, b = pcs
    a.createDataChannel("chat")
    await connect(a, b)
    assert selected_candidate_pair(a) is not None  # connected: a pair to read
    await a.close()
    # a closed pc is still read without raising, and reports no live path
    assert selected_candidate_pair(a) is None, selected_candidate_pair(a)
    assert isinstance(local_candidates(a), list)
    assert isinstance(remote_candidates(a), list)


# -- fakes: the structural cases a lab network does not produce ---------------------------


def _candidate(kind: str, host: str = "127.0.0.1", port: int = 1000) -> Candidate:
    return Candidate("f", 1, "udp", 100, host, port, kind, related_address=None)


def _fake_pc(*connections: Any, sctp_connection: Any = None) -> Any:
    def dtls(connection: Any) -> Any:
        return SimpleNamespace(transport=SimpleNamespace(_connection=connection))

    shared = [dtls(c) for c in connections]
    transceivers = [
        SimpleNamespace(sender=SimpleNamespace(transport=t), receiver=SimpleNamespace(transport=t))
        for t in shared
    ]
    sctp = SimpleNamespace(transport=dtls(sctp_connection)) if sctp_connection else None
    return SimpleNamespace(getTransceivers=lambda: transceivers, sctp=sctp)


def test_ice_connections_dedupes_shared_transport() -> None:
    conn = SimpleNamespace(_nominated={}, local_candidates=[], remote_candidates=[])
    pc = _fake_pc(conn, conn, sctp_connection=conn)
    assert ice_connections(pc) == [conn]
    other = SimpleNamespace(_nominated={})
    assert ice_connections(_fake_pc(conn, other)) == [conn, other]
    assert ice_connections(SimpleNamespace()) == []  # nothing there: empty, not an error


def test_relay_protocol_comes_from_turn_transport() -> None:
    pair = SimpleNamespace(
        local_candidate=_candidate("relay"), remote_candidate=_candidate("srflx")
    )
    for kwargs, expected in (
        ({"turn_transport": "udp", "turn_ssl": False}, "udp"),
        ({"turn_transport": "tcp", "turn_ssl": False}, "tcp"),
        ({"turn_transport": "tcp", "turn_ssl": True}, "tls"),
    ):
        conn = SimpleNamespace(_nominated={1: pair}, **kwargs)
        selected = selected_candidate_pair(_fake_pc(conn))
        assert selected is not None
        assert selected.local.type == "relay"
        assert selected.remote.type == "srflx"
        assert selected.protocol == "udp"
        assert selected.relay_protocol == expected


def test_only_component_1_counts_and_missing_attributes_are_tolerated() -> None:
    pair = SimpleNamespace(local_candidate=_candidate("host"), remote_candidate=_candidate("host"))
    assert selected_candidate_pair(_fake_pc(SimpleNamespace(_nominated={2: pair}))) is None
    assert selected_candidate_pair(_fake_pc(SimpleNamespace())) is None
    assert local_candidates(_fake_pc(SimpleNamespace())) == []


def test_candidate_info_copies_aioice_candidate() -> None:
    c = Candidate("abc", 1, "UDP", 42, "10.0.0.2", 5, "srflx", "192.168.1.2", 6)
    conn = SimpleNamespace(local_candidates=[c], remote_candidates=[])
    assert local_candidates(_fake_pc(conn)) == [
        CandidateInfo("abc", 1, "udp", 42, "10.0.0.2", 5, "srflx", "192.168.1.2", 6)
    ]
