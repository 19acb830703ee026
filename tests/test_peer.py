"""Real aiortc peers meshing through the real signaling server on loopback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from helpers import until as _until

from rtclab.ice.config import IceConfig
from rtclab.ice.gathering import gathering_on
from rtclab.peer import Peer
from rtclab.signaling.client import SignalingClient, SignalingError

MakePeer = Callable[..., Awaitable[Peer]]

pytestmark = pytest.mark.slow


def _rate(samples: list[tuple[float, int]]) -> float:
    (t0, n0), (t1, n1) = samples[0], samples[-1]
    return (n1 - n0) / (t1 - t0)


async def test_three_peer_mesh_media_and_fps(make_peer: MakePeer) -> None:
    fps = 15.0
    peers = [await make_peer(n, fps=fps) for n in ("alice", "bob", "carol")]
    for p in peers:
        await p.wait_connected(count=2, timeout=15)
    # the joiner offered to everyone already there; the others answered
    assert {c.role for c in peers[2].connections.values()} == {"offerer"}
    assert {c.role for c in peers[0].connections.values()} == {"answerer"}

    await _until(
        lambda: all(
            c.counters.frames_received.get("video", 0) > 5
            for p in peers
            for c in p.connections.values()
        ),
        timeout=10,
    )
    # measure the received video rate on every directed link over ~3 s
    links = [(p, c) for p in peers for c in p.connections.values()]
    first = {
        (p.name, c.remote): (time.monotonic(), c.counters.frames_received["video"])
        for p, c in links
    }
    audio_first = {(p.name, c.remote): c.counters.frames_received.get("audio", 0) for p, c in links}
    await asyncio.sleep(3.0)
    for p, c in links:
        t0, n0 = first[(p.name, c.remote)]
        rate = _rate([(t0, n0), (time.monotonic(), c.counters.frames_received["video"])])
        assert fps * 0.8 <= rate <= fps * 1.2, f"{c.remote} -> {p.name}: {rate:.1f} fps"
        audio = c.counters.frames_received.get("audio", 0) - audio_first[(p.name, c.remote)]
        assert audio > 3.0 * 25, f"{c.remote} -> {p.name}: only {audio} audio frames in 3 s"
        frame = c.latest_frame
        assert frame is not None and (frame.width, frame.height) == (320, 240)


async def test_default_ice_is_loopback_only_without_servers(make_peer: MakePeer) -> None:
    config = IceConfig().rtc_configuration()
    assert config.iceServers == []  # never aiortc's implicit Google STUN server
    alice = await make_peer("alice", video=False, audio=False)
    bob = await make_peer("bob", video=False, audio=False)
    await bob.wait_connected(count=1)
    for peer in (alice, bob):
        conn = next(iter(peer.connections.values()))
        lines = [
            x for x in conn.pc.localDescription.sdp.splitlines() if x.startswith("a=candidate:")
        ]
        assert lines, "no candidates in the SDP"
        assert all(line.split()[4] == "127.0.0.1" for line in lines), lines
        assert all(line.split()[7] == "host" for line in lines), lines


async def test_chat_complete_and_in_order_and_cursor_channel(make_peer: MakePeer) -> None:
    alice = await make_peer("alice", video=False, audio=False)
    bob = await make_peer("bob", video=False, audio=False)
    await bob.wait_connected(count=1)
    await _until(lambda: all(c.chat and c.chat.is_open for p in (alice, bob) for c in p))

    for peer in (alice, bob):
        cursors = peer.connections[next(iter(peer.connections))].cursors
        assert cursors is not None
        assert cursors.channel.ordered is False
        assert cursors.channel.maxRetransmits == 0
        assert not cursors.reliable
        chat = peer.connections[next(iter(peer.connections))].chat
        assert chat is not None and chat.channel.ordered is True and chat.reliable

    texts = [f"message {i} " + "x" * (i % 50) for i in range(200)]
    for text in texts:
        assert await alice.send_chat(text) == 1
    await _until(lambda: len([m for m in bob.chat_log if m.remote == "alice"]) == len(texts))
    assert [m.text for m in bob.chat_log if m.remote == "alice"] == texts

    sent = bob.send_cursor(12.5, 40.0)
    assert sent == 1
    await _until(lambda: alice.cursor_positions.get("bob") == (12.5, 40.0))


async def test_backpressure_engages_and_is_counted(make_peer: MakePeer) -> None:
    alice = await make_peer("alice", video=False, audio=False)
    bob = await make_peer("bob", video=False, audio=False)
    await bob.wait_connected(count=1)
    await _until(lambda: all(c.chat and c.chat.is_open for p in (alice, bob) for c in p))
    conn = bob.connections["alice"]

    # unreliable: a burst over the threshold is dropped, and every drop is counted
    blob = "y" * 1000
    attempts = 500
    accepted = sum(
        conn.cursors.try_send({"type": "cursor", "x": 1, "y": 2, "pad": blob})
        for _ in range(attempts)
    )  # type: ignore[union-attr]
    counters = conn.counters.channel("cursors")
    assert counters.messages_dropped > 0
    assert accepted + counters.messages_dropped == attempts
    assert counters.messages_sent == accepted

    # reliable: a flood waits (counted) instead of dropping; everything arrives in order
    big = "z" * 20_000
    chat = conn.chat
    assert chat is not None
    await asyncio.gather(*(chat.send({"type": "chat", "text": f"{i}:{big}"}) for i in range(40)))
    assert conn.counters.channel("chat").backpressure_waits > 0
    assert conn.counters.channel("chat").messages_dropped == 0
    await _until(lambda: len([m for m in alice.chat_log if m.remote == "bob"]) == 40, timeout=20)
    got = [int(m.text.split(":", 1)[0]) for m in alice.chat_log if m.remote == "bob"]
    assert sorted(got) == list(range(40))
    assert all(
        len(m.text.split(":", 1)[1]) == len(big) for m in alice.chat_log if m.remote == "bob"
    )


async def test_screen_share_swap_changes_received_resolution(make_peer: MakePeer) -> None:
    alice = await make_peer("alice", audio=False, data=False)
    bob = await make_peer("bob", audio=False, data=False)
    await bob.wait_connected(count=1)
    await _until(lambda: alice.latest_frame("bob") is not None)
    assert alice.latest_frame("bob").width == 320  # type: ignore[union-attr]
    bob.switch_video("screen")
    await _until(lambda: alice.latest_frame("bob").width == 640)  # type: ignore[union-attr]
    bob.switch_video("camera")
    await _until(lambda: alice.latest_frame("bob").width == 320)  # type: ignore[union-attr]


async def test_leave_gives_peer_left_and_closes(make_peer: MakePeer) -> None:
    alice = await make_peer("alice", video=False, audio=False)
    bob = await make_peer("bob", video=False, audio=False)
    await bob.wait_connected(count=1)
    pc = alice.connections["bob"].pc
    await bob.leave()
    await _until(lambda: "bob" not in alice.connections)
    assert pc.connectionState == "closed"
    assert any(e.event == "peer-left" and e.remote == "bob" for e in alice.events)
    # bob can come back, and meshes again
    await bob.join()
    await bob.wait_connected(count=1)
    await alice.wait_connected(count=1)
    assert alice.connections["bob"].state == "connected"


def _media_tasks() -> set[asyncio.Task[Any]]:
    """Running tasks of aiortc/aioice (RTP, RTCP, consent checks, ICE monitor)."""
    return {
        t
        for t in asyncio.all_tasks()
        if t.get_coro().__qualname__.split(".")[0]  # type: ignore[union-attr]
        in {"RTCRtpSender", "RTCRtpReceiver", "RTCIceTransport", "Connection", "RTCSctpTransport"}
    }


async def test_leaving_together_leaves_no_media_tasks(
    make_peer: MakePeer,
) -> None:
    before = _media_tasks()
    alice = await make_peer("alice", width=160, height=120)
    bob = await make_peer("bob", width=160, height=120)
    await bob.wait_connected(count=1)
    assert _media_tasks() - before  # the pair runs RTP, RTCP and consent tasks
    # both leave at once (as Lab.stop does): each one's signaling loop hears the other's
    # peer-left and starts closing that connection just before its own leave cancels it
    await asyncio.gather(alice.leave(), bob.leave())
    await asyncio.sleep(0.2)
    assert not (_media_tasks() - before), sorted(
        t.get_coro().__qualname__  # type: ignore[union-attr]
        for t in _media_tasks() - before
    )


async def test_receive_only_viewer_joins_and_watches(make_peer: MakePeer) -> None:
    """A joiner that sends nothing still offers to receive (recvonly), like a browser viewer."""
    alice = await make_peer("alice", data=False)
    viewer = await make_peer("viewer", video=False, audio=False, data=False)
    await viewer.wait_connected(count=1)
    await _until(lambda: viewer.latest_frame("alice") is not None)
    link = viewer.connections["alice"]
    await _until(lambda: link.counters.frames_received.get("audio", 0) > 10)
    assert not alice.connections["viewer"].remote_tracks  # nothing comes back


async def test_duplicate_name_is_refused(make_peer: MakePeer) -> None:
    await make_peer("alice", video=False, audio=False)
    with pytest.raises(SignalingError) as err:
        await make_peer("alice", video=False, audio=False)
    assert err.value.code == "duplicate-user"


async def test_relay_policy_without_turn_fails_with_reason(make_peer: MakePeer) -> None:
    ice = IceConfig(ice_transport_policy="relay", connect_timeout=2.0)
    alice = await make_peer("alice", video=False, audio=False, ice=ice)
    bob = await make_peer("bob", video=False, audio=False, ice=ice)
    started = time.monotonic()
    with pytest.raises(ConnectionError, match="no local ICE candidates"):
        await bob.wait_connected(count=1, timeout=10)
    assert time.monotonic() - started < 2.0 + 1.5
    conn = bob.connections["alice"]
    assert conn.state == "failed"
    assert "TURN" in (conn.failure_reason or "")
    assert any(e.event == "failed" for e in bob.events)
    del alice


async def test_accepts_trickled_candidates_like_a_browser(make_peer: MakePeer, server: Any) -> None:
    """A browser-like remote strips candidates from its SDP and trickles them one by one."""
    alice = await make_peer("alice", video=False, audio=False)
    client = await SignalingClient.connect(server.url)
    pc = RTCPeerConnection(IceConfig().rtc_configuration())
    try:
        peers = await client.join("test", "browser")
        assert peers == ["alice"]
        pc.createDataChannel("chat")
        with gathering_on(("127.0.0.1",)):
            await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        candidates = [x[2:] for x in sdp.splitlines() if x.startswith("a=candidate:")]
        stripped = "\r\n".join(
            x
            for x in sdp.split("\r\n")
            if not x.startswith("a=candidate:") and x != "a=end-of-candidates"
        )
        await client.offer("alice", {"type": "offer", "sdp": stripped})
        for line in candidates:
            await client.ice_candidate(
                "alice", {"candidate": line, "sdpMid": "0", "sdpMLineIndex": 0}
            )
        await client.ice_candidate("alice", None)
        answer = await client.recv(timeout=10)
        assert answer["type"] == "answer" and answer["from"] == "alice"
        sdp = answer["sdp"]  # a browser ignores the extra "rtclab" key; a dataclass does not
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp["sdp"], type=sdp["type"]))
        await alice.wait_connected(count=1, timeout=10)
        assert alice.connections["browser"].trickled_candidates == len(candidates)
    finally:
        await pc.close()
        await client.close()


async def test_join_unreachable_server_says_so() -> None:
    peer = Peer("alice", "ws://127.0.0.1:9/signal", video=False, audio=False)
    with pytest.raises(ConnectionError, match="cannot reach the signaling server"):
        await peer.join()
    assert peer.state == "new"


async def test_mute_sends_black_frames_and_unmute_restores(make_peer: MakePeer) -> None:
    alice = await make_peer("alice", audio=False, data=False)
    bob = await make_peer("bob", audio=False, data=False)
    await bob.wait_connected(count=1)

    def luma() -> float:
        frame = alice.latest_frame("bob")
        assert frame is not None
        return float(frame.to_ndarray(format="gray").mean())

    await _until(lambda: alice.latest_frame("bob") is not None)
    assert luma() > 60  # colour bars
    bob.set_muted("video", True)
    await _until(lambda: luma() < 25)
    frames = alice.connections["bob"].counters.frames_received["video"]
    await asyncio.sleep(0.5)
    assert alice.connections["bob"].counters.frames_received["video"] > frames  # still flowing
    bob.set_muted("video", False)
    await _until(lambda: luma() > 60)


async def test_record_received_media_plays_back(make_peer: MakePeer, tmp_path: Any) -> None:
    import av

    alice = await make_peer("alice", data=False, fps=15)
    bob = await make_peer("bob", data=False, fps=15)
    await bob.wait_connected(count=1)
    await _until(lambda: {"audio", "video"} <= set(alice.connections["bob"].remote_tracks))
    before = alice.connections["bob"].counters.frames_received.get("video", 0)
    path = await alice.record("bob", tmp_path / "bob.mp4", 2.0)
    # the recorder read a relayed copy: the frame counter kept counting meanwhile
    assert alice.connections["bob"].counters.frames_received["video"] - before >= 20
    with av.open(str(path)) as container:
        video = [f for f in container.decode(video=0)]
    assert 20 <= len(video) <= 40, len(video)
    assert (video[0].width, video[0].height) == (320, 240)


async def test_answerer_sends_only_what_the_offer_has_room_for(make_peer: MakePeer) -> None:
    """A video-only joiner offers one m-line: the audio+video answerer must still answer."""
    alice = await make_peer("alice")  # audio and video
    bob = await make_peer("bob", audio=False, receive=False)  # offers video (+ data) only
    await bob.wait_connected(count=1)
    assert any(e.event == "media-not-offered" and e.value == "audio" for e in alice.events)
    await _until(lambda: bob.latest_frame("alice") is not None)
    await _until(lambda: alice.latest_frame("bob") is not None)


async def test_wait_connected_means_usable_and_a_send_that_cannot_arrive_says_so(
    make_peer: MakePeer,
) -> None:
    alice = await make_peer("alice", video=False, audio=False)
    with pytest.raises(ConnectionError, match="nobody else is in the room"):
        await alice.send_chat("alone")
    assert alice.chat_log == []  # never logged as sent
    assert alice.send_cursor(1, 2) == 0
    bob = await make_peer("bob", video=False, audio=False)
    # at once, right after wait_connected: every channel on both sides is open
    for peer in (bob, alice):
        (conn,) = await peer.wait_connected(count=1)
        assert conn.chat is not None and conn.chat.is_open
        assert conn.cursors is not None and conn.cursors.is_open
    assert await bob.send_chat("first") == 1
    assert alice.send_cursor(3, 4) == 1
    await _until(lambda: [m.text for m in alice.chat_log] == ["first"])
    await _until(lambda: bob.cursor_positions.get("alice") == (3.0, 4.0))
    # offerer (bob, the joiner) and answerer (alice) both report their channels open
    for peer in (alice, bob):
        opened = sorted(e.value for e in peer.events if e.event == "datachannel-open")
        assert opened == ["chat", "cursors"], (peer.name, opened)


async def test_candidates_gathered_counts_one_transport(make_peer: MakePeer) -> None:
    alice = await make_peer("alice")
    bob = await make_peer("bob")
    await bob.wait_connected(count=1)
    for peer in (alice, bob):
        counts = [e.value for e in peer.events if e.event == "candidates-gathered"]
        # loopback only: one host candidate per transport (audio, video and data bundled)
        assert counts == [1], (peer.name, counts)
