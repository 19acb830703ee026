"""Peers in worker processes (issue 15): the pure protocol and mirror, then one shared
``Lab(workers=2)`` with real aiortc peers in real worker processes, a kernel killed with
SIGKILL (a LocalCluster of processes: tests/test_experiments_cluster.py)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import pytest_asyncio

from rtclab import IceConfig, Lab, LossBasedAimd
from rtclab.peer.media import TestPatternTrack, luma_plane
from rtclab.peer.resilience import Resilience
from rtclab.qoe.tag import read_tag
from rtclab.widgets.remote_peer_widget import RemotePeerWidget
from rtclab.wire import decode_line, encode_line, json_row, rows_message
from rtclab.workers.mirror import PeerMirror
from rtclab.workers.protocol import (
    frame_from_wire,
    frame_to_wire,
    options_from_wire,
    options_to_wire,
    raise_error,
)
from rtclab.workers.remote import RemotePeer

SMALL = {"width": 160, "height": 120, "fps": 10.0}

# -- pure --------------------------------------------------------------------------------


def test_row_protocol_lines() -> None:
    row = {"t": 1.0, "elapsed_s": 2.0, "peer": "a", "remote": "b", "rtt_ms": math.nan, "x": 3}
    assert json_row(row) == {"peer": "a", "remote": "b", "rtt_ms": None, "x": 3}
    line = encode_line(rows_message([row], "a"))
    assert line.endswith(b"\n") and decode_line(line) == {"rows": [json_row(row)], "peer": "a"}
    assert decode_line(b"a stray print\n") is None and decode_line(b"[1]") is None


def test_mirror_folds_events_into_state() -> None:
    mirror = PeerMirror("a", "lab")
    for remote, event, value in [
        (None, "joined", "room1"), ("b", "connection-created", "offerer"),
        ("b", "connection-state", "connecting"), ("b", "connected", 12.5),
        ("b", "datachannel-open", "chat"), ("b", "selected-pair", "host/udp"),
        ("b", "chat", "hi"), (None, "video-source", "screen"), (None, "video-muted", True),
        (None, "max-bitrate-kbps", 300), ("c", "connection-created", "answerer"),
        ("c", "failed", "ICE reported failure"), ("ghost", "connected", 1.0),
    ]:  # fmt: skip
        mirror.apply(remote, event, value)
    b, c = mirror.connections["b"], mirror.connections["c"]
    assert (mirror.state, mirror.room, mirror.video_source) == ("joined", "room1", "screen")
    assert mirror.muted == {"audio": False, "video": True}
    assert mirror.max_bitrate == {"video": 300_000}
    assert (b.state, b.connect_ms, b.usable, b.selected_pair) == (
        "connected",
        12.5,
        True,
        "host/udp",
    )
    assert c.state == "failed" and "ghost" not in mirror.connections
    assert [(m.sender, m.text) for m in mirror.chat_log] == [("b", "hi")]
    assert mirror.fail("worker gone") == ["b"]  # c had failed already
    assert b.failure_reason == "worker gone" and mirror.state == "failed"
    mirror.apply("b", "closed", None)
    assert "b" not in mirror.connections


def test_peer_options_cross_the_process_line() -> None:
    ice = IceConfig(connect_timeout=3.0, interfaces=("127.0.0.1",))
    options = {"ice": ice, "resilience": Resilience(loss_timeout=1.0),
               "estimator": LossBasedAimd, "video": False, "path": Path("/x")}  # fmt: skip
    wire = options_to_wire(options)
    back = options_from_wire(wire)
    assert back["ice"] == ice and back["resilience"] == Resilience(loss_timeout=1.0)
    assert back["estimator"] is LossBasedAimd and back["path"] == "/x" and not back["video"]
    with pytest.raises(ValueError, match="worker='kernel'"):
        options_to_wire({"network": object()})
    with pytest.raises(ValueError, match="importable by name"):
        options_to_wire({"estimator": lambda: None})
    with pytest.raises(ConnectionError, match="boom"):
        raise_error({"type": "ConnectionError", "message": "boom"})
    with pytest.raises(RuntimeError, match="Weird: x"):
        raise_error({"type": "Weird", "message": "x"})


def _pixels(frame: av.VideoFrame) -> list[Any]:
    return [np.frombuffer(memoryview(p), np.uint8).reshape(-1, p.line_size)[: p.height, : p.width]
            for p in frame.planes]  # fmt: skip


async def test_a_frame_crosses_the_process_line_pixel_for_pixel() -> None:
    track = TestPatternTrack(98, 62, 30.0)
    odd = av.VideoFrame(97, 63, "yuv420p")  # odd sizes: chroma planes round up
    for plane in _pixels(odd):
        plane[:] = np.random.default_rng(1).integers(0, 256, plane.shape)
    for frame in (await track.recv(), odd):
        back = frame_from_wire(decode_line(encode_line(frame_to_wire(frame))) or {})
        assert (back.width, back.height, back.pts, back.time_base) == (
            frame.width, frame.height, frame.pts, frame.time_base
        )  # fmt: skip
        assert all(np.array_equal(a, b) for a, b in zip(_pixels(back), _pixels(frame), strict=True))
    track.stop()


# -- one shared lab with two worker processes ------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def lab() -> AsyncIterator[Lab]:
    lab = Lab(workers=2, stats_interval=0.5, name="workers-test", preload_widgets=False)
    await lab.start()
    try:
        yield lab
    finally:
        if lab.url is not None:
            await lab.stop()


async def _until(condition: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.05)


@pytest.mark.asyncio(loop_scope="module")
async def test_remote_rows_land_beside_local_ones(lab: Lab) -> None:
    a = await lab.peer("a", room="mix", **SMALL)
    b = await lab.peer("b", room="mix", **SMALL)
    c = await lab.peer("c", room="mix", worker="kernel", **SMALL)
    assert isinstance(a, RemotePeer) and isinstance(b, RemotePeer)
    assert {a.worker, b.worker} == {0, 1} and not isinstance(c, RemotePeer)
    await lab.wait_connected(timeout=20)
    assert a.state == "joined" and a.connections["c"].state == "connected"

    def inbound_video(peer: str) -> Any:
        s = lab.samples
        return s[(s.peer == peer) & (s.kind == "video") & (s.direction == "inbound")]

    def flowing(peer: str) -> bool:  # 10 fps sent; a loaded machine may deliver less
        rows = inbound_video(peer)
        return set(rows[rows.frames_per_second > 3].remote) == set("abc") - {peer}

    await _until(lambda: all(flowing(p) for p in "abc"), 15, "video rows of a, b and c")
    for peer in "ab":  # the worker's rows carry what a kernel peer's do
        rows = inbound_video(peer)
        for column in ("bitrate_kbps", "packets_received", "jitter_ms", "latency_ms_p50"):
            assert rows[column].notna().any(), column
        assert set(rows.local_candidate_type.dropna()) == {"host"}
    assert {"a", "b", "c"} <= set(lab.frames.peer)
    events = lab.events
    assert {"joined", "connected", "selected-pair"} <= set(events[events.peer == "a"].event)


@pytest.mark.asyncio(loop_scope="module")
async def test_every_remote_peer_method_works(lab: Lab, tmp_path: Path) -> None:
    a, c = lab.peers["a"], lab.peers["c"]
    assert isinstance(a, RemotePeer)
    assert len(await a.wait_connected(count=2, timeout=10)) == 2
    assert await a.send_chat("from a worker") == 2
    await _until(lambda: any(m.text == "from a worker" for m in c.chat_log), 5, "chat at c")
    assert a.chat_log[-1].text == "from a worker" and a.chat_log[-1].remote is None
    assert a.send_cursor(0.25, 0.5) == 2
    await _until(lambda: c.cursor_positions.get("a") == (0.25, 0.5), 5, "cursor at c")
    await a.switch_video("screen")
    await a.set_max_bitrate(150)
    await a.set_muted("audio", True)
    assert (a.video_source, a.max_bitrate["video"], a.muted["audio"]) == ("screen", 150_000, True)
    await a.set_video_format(96, 64, 5)
    await _until(lambda: getattr(c.latest_frame("a"), "width", 0) == 96, 5, "96 px at c")
    with pytest.raises(ValueError, match="camera"):
        a.switch_video("webcam")
    with pytest.raises(LookupError, match="nobody"):
        await a.record("nobody", tmp_path / "x.mp4", 0.5)
    out = await a.record("c", tmp_path / "c.mp4", 1.0)
    assert out.exists() and out.stat().st_size > 1000
    widget = RemotePeerWidget(a)  # asks the worker for previews while it is open
    try:
        await _until(lambda: {None, "b", "c"} <= set(a.previews), 5, "previews")
        assert all(jpeg.startswith(b"\xff\xd8") for jpeg in a.previews.values())
        await _until(lambda: widget.images["c"].value == a.previews["c"], 3, "c's preview shown")
        assert "worker" in widget.header.value and "connected" in widget.infos["c"].value
    finally:
        widget.close()
    await a.leave()
    assert a.state == "left"
    await _until(lambda: "a" not in c.connections, 5, "a gone at c")
    await a.join()
    await a.wait_connected(count=2, timeout=10)


@pytest.mark.asyncio(loop_scope="module")
async def test_remote_candidates_estimates_and_frames(lab: Lab) -> None:
    """What a Peer reads synchronously (candidates, estimates) streams from the worker;
    a frame is fetched whole."""
    e = await lab.peer("e", room="inspect", estimator=LossBasedAimd, **SMALL)
    f = await lab.peer("f", room="inspect", worker="kernel", estimator=LossBasedAimd,
                       width=192, height=144, fps=10)  # fmt: skip
    assert isinstance(e, RemotePeer)
    await e.wait_connected(count=1, timeout=20)
    assert e.candidates().selected.sum() == 2  # sent before the reply: the pair is marked
    await _until(lambda: not e.estimates().empty, 10, "e's REMB estimates")
    ours, local = e.candidates(), f.candidates()
    assert list(ours.columns) == list(local.columns) and ours.dtypes.equals(local.dtypes)
    assert set(ours.peer) == {"e"} and set(ours.remote) == {"f"} and set(ours.side) == {
        "local", "remote"
    }  # fmt: skip
    assert set(ours[ours.side == "local"].type) == {"host"}
    estimates = e.estimates()
    assert list(estimates.columns) == list(f.estimates().columns)
    assert estimates.dtypes.equals(f.estimates().dtypes)
    assert set(estimates.estimator) == {"loss-based AIMD"} and set(estimates.remote) == {"f"}
    await _until(lambda: len(e.estimates()) > len(estimates), 5, "more estimates")
    assert not e.estimates().duplicated().any()  # only new rows cross, once each
    frame = await e.latest_frame("f")  # f sends 192 px, wider than a 160 px preview
    assert isinstance(frame, av.VideoFrame) and (frame.width, frame.height) == (192, 144)
    assert read_tag(luma_plane(frame)) is not None  # the pixels, not a JPEG of them
    assert await e.latest_frame("nobody") is None
    everyone = lab.candidates
    assert everyone[everyone.peer == "e"].reset_index(drop=True).equals(ours)
    with pytest.raises(RuntimeError, match="cannot cross the process line"):
        _ = e.local_video
    with pytest.raises(RuntimeError, match="request_previews"):
        e.preview_track()


@pytest.mark.asyncio(loop_scope="module")
async def test_a_dead_worker_fails_its_peers_within_5s(lab: Lab) -> None:
    b = lab.peers["b"]
    assert isinstance(b, RemotePeer) and lab.workers is not None
    pending = asyncio.ensure_future(b.wait_connected(count=9, timeout=60))
    await asyncio.sleep(0.2)
    pid = lab.workers.links[b.worker].pid
    assert pid is not None
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(ConnectionError, match="SIGKILL"):
        await asyncio.wait_for(pending, 5)
    await _until(lambda: b.state == "failed", 5 - (time.monotonic() - killed), "b failed")
    assert {c.state for c in b.connections.values()} == {"failed"}
    events = lab.events
    assert (events[events.peer == f"worker-{b.worker}"].event == "error").any()
    assert set(events[(events.peer == "b") & (events.event == "failed")].remote) == {"a", "c"}
    assert any("SIGKILL" in e for e in lab.errors)
    with pytest.raises(ConnectionError, match="gone"):
        await b.send_chat("anyone?")
    # the lab goes on: a new peer lands on the live worker
    d = await lab.peer("d", room="after", **SMALL)
    assert isinstance(d, RemotePeer) and d.worker != b.worker


@pytest.mark.asyncio(loop_scope="module")
async def test_no_worker_process_after_stop(lab: Lab) -> None:
    assert lab.workers is not None
    links = list(lab.workers.links)
    await lab.stop()
    for link in links:
        assert link.process is not None and link.process.returncode is not None
        assert not _running(link.process.pid)


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie is init's to reap)."""
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    return False


KERNEL = textwrap.dedent("""
    import asyncio
    from rtclab import Lab

    async def main():
        lab = Lab(workers=1, preload_widgets=False)
        await lab.start()
        print(*lab.workers.pids, flush=True)
        await asyncio.sleep(60)

    asyncio.run(main())
""")


def test_no_worker_outlives_a_killed_kernel() -> None:
    kernel = subprocess.Popen([sys.executable, "-c", KERNEL], stdout=subprocess.PIPE, text=True)
    try:
        assert kernel.stdout is not None
        pids = [int(p) for p in kernel.stdout.readline().split()]
        assert len(pids) == 1 and _running(pids[0])
    finally:
        kernel.send_signal(signal.SIGKILL)
        kernel.wait()
    deadline = time.monotonic() + 5
    while _running(pids[0]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(pids[0])
