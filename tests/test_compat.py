"""rtclab._compat: the probe, each named function on real aiortc connections, and that no
other module touches aiortc's or aioice's internals.

Run this file first when trying an aiortc/aioice outside the range pinned in pyproject.toml.
"""

from __future__ import annotations

import ast
import asyncio
import importlib.metadata
import re
import struct
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aioice
import pytest
from aioice import stun
from aiortc import (
    RTCConfiguration,
    RTCDtlsTransport,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCSctpTransport,
)
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, VideoStreamTrack
from helpers import until as _until
from packaging.requirements import Requirement

from rtclab import Lab
from rtclab._compat import HOOKS, probe
from rtclab._compat.aioice import (
    connection_protocols,
    nominated_pair,
    turn_client,
)
from rtclab._compat.aiortc import (
    cap_encoder_bitrate,
    dtls_bytes_received,
    dtls_transport_stats,
    ice_transport_connection,
    on_rtp_packet,
    receiver_rtx_ssrcs,
    receiver_streams,
    replace_remote_bitrate_estimator,
    sctp_rtt_ms,
    sender_encoder,
    transceiver_codecs,
)
from rtclab.ice.coturn import Coturn
from rtclab.ice.gathering import gathering_on
from rtclab.peer.peer import Peer

ROOT = Path(__file__).resolve().parents[1]

# --------------------------------------------------------------------------- the probe


def test_probe_finds_every_hook_on_the_installed_versions() -> None:
    assert probe() == []
    assert len(HOOKS) >= 15


def _init_without_srtt(self: Any, *args: Any, **kwargs: Any) -> None:
    self.other = None  # an __init__ that no longer sets _srtt


async def _gather_without_lookup(self: Any) -> None:
    return None  # a gather that no longer looks get_host_addresses up


@pytest.mark.parametrize(
    ("owner", "attribute", "replacement", "named", "hooks"),
    [
        (RTCDtlsTransport, "_get_stats", None, "RTCDtlsTransport._get_stats", 1),
        (RTCRtpSender, "_next_encoded_frame", None, "RTCRtpSender._next_encoded_frame", 1),
        # the RTCP counters and the estimator's REMB both go through it
        (RTCRtpReceiver, "_send_rtcp", None, "_send_rtcp(packet)", 2),
        (RTCSctpTransport, "__init__", _init_without_srtt, "RTCSctpTransport._srtt", 1),
        # a gather that looks nothing up loses both things rtclab's gathering replaces
        (
            aioice.Connection,
            "gather_candidates",
            _gather_without_lookup,
            "Connection.gather_candidates",
            2,
        ),
    ],
)
def test_probe_names_a_hook_that_went_away(
    monkeypatch: pytest.MonkeyPatch,
    owner: type,
    attribute: str,
    replacement: Any,
    named: str,
    hooks: int,
) -> None:
    """A method removed, an attribute no longer set in __init__, a global no longer looked up:
    every hook that needs it is named, and no other."""
    if replacement is None:
        monkeypatch.delattr(owner, attribute)
    else:
        monkeypatch.setattr(owner, attribute, replacement)
    missing = probe()
    assert len(missing) == hooks, missing
    assert all(named in line for line in missing), missing


async def test_lab_start_warns_with_the_missing_hooks(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        async with Lab(name="compat-ok", preload_widgets=False):
            pass
    assert not [w for w in seen if "lacks internals" in str(w.message)]

    monkeypatch.delattr(RTCDtlsTransport, "_get_stats")
    with pytest.warns(RuntimeWarning, match=r"lacks internals.*RTCDtlsTransport\._get_stats"):
        async with Lab(name="compat-missing", preload_widgets=False):
            pass
    assert "RTCDtlsTransport._get_stats" in caplog.text


def _pinned(name: str) -> Requirement:
    text = (ROOT / "pyproject.toml").read_text()
    match = re.search(rf'^\s*"({name}[<>=!~ ][^"]*)"', text, re.MULTILINE)
    assert match is not None, f"{name} is not pinned in pyproject.toml"
    return Requirement(match.group(1))


@pytest.mark.parametrize("name", ["aiortc", "aioice"])
def test_installed_and_binder_versions_are_in_the_pinned_range(name: str) -> None:
    """The range the probe was run on: a wider install must go through this file first."""
    pinned = _pinned(name)
    assert pinned.specifier.contains(importlib.metadata.version(name))
    binder = (ROOT / "binder" / "requirements.txt").read_text()
    match = re.search(rf"^{name}==(\S+)$", binder, re.MULTILINE)
    assert match is not None and pinned.specifier.contains(match.group(1))


def test_compat_imports_nothing_else_from_rtclab() -> None:
    """The bottom layer: everything may import it, it imports only aiortc/aioice/stdlib."""
    for path in (ROOT / "rtclab" / "_compat").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.level <= 1, f"{path.name} imports from {'.' * node.level}{node.module}"
                assert not (node.module or "").startswith("rtclab"), path.name
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("rtclab") for a in node.names), path.name


# --------------------------------------------------------------------------- no leaks

#: Private aiortc/aioice names (and replaced module functions) that only _compat may touch.
PRIVATE = [
    r"_RTC\w+__\w+",  # name-mangled aiortc attributes (__encoder, __remote_streams, ...)
    r"_\w+Encoder__\w+",
    r"_TurnTransport__\w+",
    r"\b_handle_rtp_packet\b",
    r"\b_handle_rtcp_packet\b",
    r"\b_send_rtcp\b",
    r"\b_retransmit\b",
    r"\b_next_encoded_frame\b",
    r"\b_prefetch\b",
    r"\b_get_stats\b",
    r"\b_srtt\b",
    r"\b_codecs\b",
    r"[\"'.]_connection\b",
    r"\b_nominated\b",
    r"\b_protocols\b",
    r"\b__class__\s*=",
    r"aioice\.ice\.\w+\s*=",
    r"\bcreate_datagram_endpoint\s*=",
    r"\b(peer_to_channel|channel_to_peer|peer_connect_waiters|request_with_retry)\b",
    r"\.(error_received|datagram_received)\s*=",
]


def _offending_lines(root: Path) -> list[str]:
    pattern = re.compile("|".join(f"(?:{p})" for p in PRIVATE))
    hits = []
    for path in sorted(root.rglob("*.py")):
        if "_compat" in path.relative_to(root).parts:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if "self._codecs" in line:  # rtclab.peer.recorder's own attribute
                continue
            if pattern.search(line):
                hits.append(f"{path.relative_to(root.parent)}:{number}: {line.strip()}")
    return hits


def test_only_compat_touches_aiortc_and_aioice_internals() -> None:
    assert _offending_lines(ROOT / "rtclab") == []


def test_the_leak_scan_finds_what_it_looks_for(tmp_path: Path) -> None:
    """The scan itself works: each pattern catches a line as the old code wrote it."""
    package = tmp_path / "rtclab"
    (package / "_compat").mkdir(parents=True)
    old = [
        'encoder = getattr(sender, "_RTCRtpSender__encoder", None)',
        "original = receiver._handle_rtp_packet",
        "sender._handle_rtcp_packet = hooked",
        "receiver._send_rtcp = hooked",
        "await sender._retransmit(seq)",
        'setattr(sender, "_next_encoded_frame", hooked)',
        "prefetch = buffer._prefetch",
        "await receiver._send_rtcp(packet)",
        "for stats in transport._get_stats().values():",
        'srtt = getattr(getattr(pc, "sctp", None), "_srtt", None)',
        'codecs = getattr(transceiver, "_codecs", None) or []',
        'connection = getattr(ice_transport, "_connection", None)',
        'nominated = getattr(connection, "_nominated", None)',
        "aioice.ice.get_host_addresses = _get_host_addresses",
        "loop.create_datagram_endpoint = create_datagram_endpoint",
        "encoder.__class__ = cls",
        "protocol.error_received = error_received",
    ]
    (package / "old.py").write_text("\n".join(old) + "\n")
    (package / "_compat" / "ok.py").write_text("\n".join(old) + "\n")
    hits = _offending_lines(package)
    assert len(hits) == len(old), hits
    assert all(h.startswith("rtclab/old.py:") for h in hits)


# --------------------------------------------------------------------------- real pcs


async def _drain(track: Any) -> None:
    try:
        while True:
            await track.recv()
    except MediaStreamError:
        pass


@pytest.fixture
async def connected() -> AsyncIterator[tuple[RTCPeerConnection, RTCPeerConnection]]:
    """a sends audio, video and a data channel to b, on 127.0.0.1 only; b plays the tracks."""
    a = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    b = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    drains: list[asyncio.Task[None]] = []
    b.on("track", lambda track: drains.append(asyncio.ensure_future(_drain(track))))
    try:
        a.addTrack(AudioStreamTrack())
        a.addTrack(VideoStreamTrack())
        a.createDataChannel("chat")  # after addTrack (aiortc MAX_BUNDLE bug)
        with gathering_on(("127.0.0.1",)):
            await a.setLocalDescription(await a.createOffer())
            await b.setRemoteDescription(a.localDescription)
            await b.setLocalDescription(await b.createAnswer())
            await a.setRemoteDescription(b.localDescription)
        await _until(
            lambda: a.connectionState == b.connectionState == "connected", what="connected"
        )
        yield a, b
    finally:
        await asyncio.gather(a.close(), b.close(), return_exceptions=True)
        for task in drains:
            task.cancel()
        await asyncio.gather(*drains, return_exceptions=True)


def _transceiver(pc: RTCPeerConnection, kind: str) -> Any:
    return next(t for t in pc.getTransceivers() if t.kind == kind)


async def test_unconnected_objects_read_as_unknown() -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        sender = pc.addTrack(VideoStreamTrack())
        assert sender_encoder(sender) is None  # created with the first frame
        assert cap_encoder_bitrate(sender, 100_000) is False
        assert sctp_rtt_ms(pc) is None
        assert transceiver_codecs(pc.getTransceivers()[0]) == []  # not negotiated yet
        assert nominated_pair(object()) is None
        assert connection_protocols(object()) == []
        assert dtls_transport_stats(object()) is None
        assert ice_transport_connection(object()) is None
        assert turn_client(object()) is None
    finally:
        await pc.close()


async def test_aiortc_reads_on_a_connected_pair(
    connected: tuple[RTCPeerConnection, RTCPeerConnection],
) -> None:
    a, b = connected
    # ICE: the aioice connection and its nominated pair, on both sides
    for pc in (a, b):
        dtls = _transceiver(pc, "video").receiver.transport
        connection = ice_transport_connection(dtls.transport)
        assert isinstance(connection, aioice.Connection)
        pair = await _until(lambda c=connection: nominated_pair(c), what="nominated pair")
        assert pair.local_candidate.host == pair.remote_candidate.host == "127.0.0.1"
        assert nominated_pair(connection, component=2) is None
        protocols = connection_protocols(connection)
        assert pair.protocol in protocols
        assert all(p.local_candidate.type == "host" for p in protocols)
        assert turn_client(pair.protocol) is None  # a host socket, not a relay

    # codecs: the RTP clocks the jitter conversion needs
    for pc in (a, b):
        assert transceiver_codecs(_transceiver(pc, "video"))[0].clockRate == 90000
        assert transceiver_codecs(_transceiver(pc, "audio"))[0].clockRate == 48000

    # inbound RTP: the hook sees every packet aiortc then still handles
    receiver = _transceiver(b, "video").receiver
    seen: list[int] = []
    assert on_rtp_packet(receiver, lambda packet: seen.append(len(packet.payload)))
    assert not on_rtp_packet(receiver, seen.append)  # once per receiver
    await _until(lambda: len(seen) >= 20, what="20 video packets")
    streams = await _until(lambda: receiver_streams(receiver), what="per-SSRC stats")
    assert sum(s.packets_received for s in streams.values()) >= 20  # aiortc still counts
    rtx = receiver_rtx_ssrcs(receiver)
    assert isinstance(rtx, dict)
    assert set(rtx.values()) <= set(streams)  # RTX maps onto a media stream

    # DTLS transport counters: bytes flow both ways
    stats = dtls_transport_stats(receiver.transport)
    assert stats is not None
    (transport,) = [s for s in stats.values() if s.type == "transport"]
    assert transport.bytesReceived > 0 and transport.bytesSent > 0
    # the bare counter liveness reads: the report's figure, without building the report
    received = dtls_bytes_received(receiver.transport)
    assert received is not None and received >= transport.bytesReceived

    # SCTP RTT once the data channel's SACKs measured it
    rtt = await _until(lambda: sctp_rtt_ms(a) or sctp_rtt_ms(b), what="an SCTP RTT")
    assert 0 < rtt < 1000


async def test_encoder_cap_on_a_connected_pair(
    connected: tuple[RTCPeerConnection, RTCPeerConnection],
) -> None:
    a, _ = connected
    sender = _transceiver(a, "video").sender
    encoder = await _until(lambda: sender_encoder(sender), what="the VP8 encoder")
    assert isinstance(encoder, Vp8Encoder)
    assert cap_encoder_bitrate(sender, 100_000)
    assert sender_encoder(sender) is encoder  # same object, capped class
    assert encoder.target_bitrate == 100_000
    encoder.target_bitrate = 1_000_000  # what a REMB does: the cap holds
    assert encoder.target_bitrate == 100_000
    assert cap_encoder_bitrate(sender, None)  # lifted: REMB's last request comes back
    assert encoder.target_bitrate == 1_000_000


async def test_bitrate_estimator_replaced_on_a_connected_pair(
    connected: tuple[RTCPeerConnection, RTCPeerConnection],
) -> None:
    """b's REMB comes from our feed (aiortc's estimator off) and sets a's encoder target."""
    a, b = connected
    encoder = await _until(
        lambda: sender_encoder(_transceiver(a, "video").sender), what="the VP8 encoder"
    )
    assert encoder.target_bitrate == 500_000  # aiortc's default before any REMB
    fed: list[tuple[int, int, int]] = []

    def feed(packet: Any, arrival_time_ms: int) -> tuple[int, list[int]] | None:
        fed.append((packet.sequence_number, packet.ssrc, arrival_time_ms))
        return (400_000, [packet.ssrc]) if len(fed) == 10 else None  # one REMB only

    video = _transceiver(b, "video").receiver
    assert replace_remote_bitrate_estimator(video, feed)
    assert not replace_remote_bitrate_estimator(video, feed)  # once per receiver
    assert not replace_remote_bitrate_estimator(_transceiver(b, "audio").receiver, feed)
    await _until(lambda: encoder.target_bitrate == 400_000, what="REMB of 400 kbps applied")
    assert len({ssrc for _, ssrc, _ in fed}) >= 1
    assert len({(seq, ssrc) for seq, ssrc, _ in fed}) == len(fed)  # every packet, once
    await asyncio.sleep(4.0)  # aiortc's own estimator would have sent REMBs of its own by now
    assert encoder.target_bitrate == 400_000 and len(fed) > 100


# --------------------------------------------------------------------------- real TURN


@pytest.mark.turn
async def test_turn_reads_on_a_relayed_pair(
    coturn: Coturn, make_peer: Callable[..., Awaitable[Peer]]
) -> None:
    ice = coturn.ice_config(["udp"], connect_timeout=8)
    options = {"ice": ice, "video": False, "audio": False, "room": "compat-turn"}
    answerer = await make_peer("ans", **options)
    offerer = await make_peer("off", **options)
    await offerer.wait_connected(count=1, timeout=10)
    (conn,) = offerer.connections.values()
    connection = ice_transport_connection(conn.pc.sctp.transport.transport)
    pair = await _until(lambda: nominated_pair(connection), what="nominated pair")
    assert pair.local_candidate.type == "relay"
    inner = turn_client(pair.protocol)
    assert inner is not None

    # turn_prepermit: the permission for our own relay IP is in aioice's bookkeeping
    assert (pair.local_candidate.host, 0) in inner.peer_to_channel

    # on_error_received: a 403 on the relay is named in the gathering log, not dropped
    response = stun.Message(message_method=stun.Method.CHANNEL_BIND, message_class=stun.Class.ERROR)
    response.attributes["ERROR-CODE"] = (403, "Forbidden IP")
    pair.protocol.error_received(stun.TransactionFailed(response))
    assert conn.gathering.first_failure("turn-forbidden") is not None

    # hold_early_channel_data: ChannelData for a channel whose bind is still in flight is
    # re-delivered once the bind is recorded, instead of dropped
    channel, peer_address = 0x7FFE, ("127.0.0.1", 9)
    received: list[tuple[bytes, Any]] = []
    real_receiver = inner.receiver

    class Recorder:
        def datagram_received(self, data: bytes, addr: Any) -> None:
            received.append((data, addr))

    inner.receiver = Recorder()
    inner.peer_connect_waiters[peer_address] = []
    try:
        inner.datagram_received(struct.pack("!HH", channel, 4) + b"ping", ("127.0.0.1", 3478))
        assert received == []
        inner.channel_to_peer[channel] = peer_address  # the bind completes
        await _until(lambda: received, timeout=1.0, what="the held ChannelData")
        assert received == [(b"ping", peer_address)]
    finally:
        inner.receiver = real_receiver
        inner.peer_connect_waiters.pop(peer_address, None)
        inner.channel_to_peer.pop(channel, None)
    assert answerer.connections
