"""PeerWidget on real peers over loopback: states, ICE path, JPEG previews, controls, lifetime."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import av
import pytest
from helpers import until as _until

from rtclab.peer import Peer
from rtclab.widgets import PeerWidget
from rtclab.widgets._preview import JPEG_MAGIC, placeholder_jpeg
from rtclab.widgets.peer_widget import peer_mimebundle, peer_widget

MakePeer = Callable[..., Awaitable[Peer]]

pytestmark = pytest.mark.slow


def _jpeg_size(data: bytes) -> tuple[int, int]:
    frames = av.CodecContext.create("mjpeg", "r").decode(av.Packet(data))
    return frames[0].width, frames[0].height


def _luma(peer: Peer, remote: str) -> float:
    frame = peer.latest_frame(remote)
    assert frame is not None
    return float(frame.to_ndarray()[: frame.height].mean())  # yuv420p: Y plane first


def _width(peer: Peer, remote: str) -> int:
    frame = peer.latest_frame(remote)
    return 0 if frame is None else int(frame.width)


def _widget_tasks() -> list[asyncio.Task[object]]:
    return [
        t
        for t in asyncio.all_tasks()
        if t.get_name().startswith("rtclab-peerwidget") and not t.done()
    ]


async def _max_loop_lateness(duration: float, period: float = 0.01) -> float:
    """How late a ``period`` ticker wakes up at worst: what a user feels as a stalled kernel."""
    loop = asyncio.get_running_loop()
    worst = 0.0
    end = loop.time() + duration
    while loop.time() < end:
        before = loop.time()
        await asyncio.sleep(period)
        worst = max(worst, loop.time() - before - period)
    return worst


async def _pair(make_peer: MakePeer) -> tuple[Peer, Peer]:
    alice = await make_peer("alice")
    bob = await make_peer("bob")
    await asyncio.gather(alice.wait_connected(count=1), bob.wait_connected(count=1))
    return alice, bob


async def test_widget_shows_state_path_and_previews_without_stalling_the_loop(
    make_peer: MakePeer,
) -> None:
    alice, _bob = await _pair(make_peer)
    widget = peer_widget(alice)
    assert isinstance(widget, PeerWidget) and widget.live
    assert peer_widget(alice) is widget  # one per peer: re-displaying adds no task
    bundle = peer_mimebundle(alice)
    assert bundle is not None and "application/vnd.jupyter.widget-view+json" in bundle
    try:
        placeholder = placeholder_jpeg()
        await _until(
            lambda: "bob" in widget.remotes and widget.remotes["bob"].image.value != placeholder,
            timeout=5,
            what="remote preview",
        )
        text = widget.text()
        assert "alice" in text and "room test" in text
        assert "connected" in text and "host/host" in text and "127.0.0.1" in text
        # what the viewer sees, live: latency of bob's tagged frames, no freeze on loopback
        await _until(lambda: "ms (median of the last" in widget.text(), timeout=5, what="latency")
        viewer = next(line for line in widget.text().splitlines() if "viewer:" in line)
        latency = float(viewer.split("latency ")[1].split(" ms")[0])
        assert 0 < latency < 500 and "0 freezes" in viewer, viewer
        remote_jpeg = widget.remotes["bob"].image.value
        assert remote_jpeg[:2] == JPEG_MAGIC and _jpeg_size(remote_jpeg) == (320, 240)
        await _until(lambda: widget.local_image.value != placeholder, timeout=3, what="local")
        assert _jpeg_size(widget.local_image.value) == (320, 240)
        # the preview keeps changing (a moving pattern), a few times a second at most
        first = widget.remotes["bob"].image.value
        await _until(lambda: widget.remotes["bob"].image.value != first, timeout=3)

        lateness = await _max_loop_lateness(2.0)
        assert lateness < 0.1, f"the loop stalled {lateness * 1000:.0f} ms with previews on"
    finally:
        await widget.aclose()
    assert widget.closed and not widget._tasks and not _widget_tasks()


async def test_controls_mute_switch_chat(make_peer: MakePeer) -> None:
    alice, bob = await _pair(make_peer)
    widget = PeerWidget(alice, fps=2)
    try:
        await _until(lambda: bob.latest_frame("alice") is not None, what="first frame")
        assert _luma(bob, "alice") > 60  # colour bars

        widget.mute_video.value = True
        await _until(lambda: _luma(bob, "alice") < 25, timeout=5, what="black frames at bob")
        assert alice.muted["video"] and widget.mute_video.description == "Unmute video"
        widget.mute_video.value = False
        await _until(lambda: _luma(bob, "alice") > 60, timeout=5, what="video back at bob")

        widget.mute_audio.value = True
        await _until(lambda: alice.muted["audio"], timeout=2, what="audio muted")
        widget.mute_audio.value = False
        await _until(lambda: not alice.muted["audio"], timeout=2, what="audio unmuted")

        widget.video_source.value = "screen"
        await _until(lambda: _width(bob, "alice") == 640, timeout=5, what="screen at bob")
        assert "screen" in widget.local_title.value
        widget.video_source.value = "camera"
        await _until(lambda: _width(bob, "alice") == 320, timeout=5, what="camera at bob")

        widget.chat_text.value = "hello <bob>"
        widget.chat_send.click()
        await _until(
            lambda: any(m.text == "hello <bob>" and m.sender == "alice" for m in bob.chat_log),
            timeout=5,
            what="chat at bob",
        )
        await _until(lambda: "hello <bob>" in widget.text(), timeout=2, what="own chat log")
        assert widget.chat_text.value == "" and "&lt;bob&gt;" in widget.chat_log.value
        assert "chat 1 sent" in widget.text()
    finally:
        await widget.aclose()


async def test_leave_rejoin_and_close(make_peer: MakePeer) -> None:
    alice, bob = await _pair(make_peer)
    widget = PeerWidget(alice)
    try:
        assert widget.rejoin_button.disabled and not widget.leave_button.disabled
        widget.leave_button.click()
        await _until(lambda: alice.state == "left" and not widget.remotes, what="left")
        await _until(lambda: "alice" not in bob.connections, what="bob saw alice leave")
        await _until(lambda: not widget.rejoin_button.disabled, timeout=2, what="rejoin enabled")
        assert "left" in widget.text()
        # nothing to show while out of the room: the widget keeps no task running
        await _until(lambda: not _widget_tasks(), timeout=2, what="idle widget tasks ended")

        widget.rejoin_button.click()
        await _until(lambda: alice.state == "joined", what="rejoined")
        await alice.wait_connected(count=1)
        await _until(lambda: "connected" in widget.text(), timeout=3, what="connected again")
        assert list(widget.remotes) == ["bob"]
        shown = widget.remotes["bob"].image.value
        await _until(lambda: widget.remotes["bob"].image.value != shown, timeout=3, what="preview")
    finally:
        widget.close()
    # close() cancels at once; the cancelled tasks end on the next loop turns
    await _until(lambda: not _widget_tasks(), timeout=2, what="widget tasks ended")
    assert alice.state == "joined"  # closing the view leaves the peer alone


async def test_without_a_running_loop_it_is_a_static_snapshot(make_peer: MakePeer) -> None:
    alice, _bob = await _pair(make_peer)
    await _until(lambda: alice.latest_frame("bob") is not None, what="first frame")
    # a worker thread has no running loop, like code outside Jupyter's kernel
    widget = await asyncio.to_thread(PeerWidget, alice)
    try:
        assert not widget.live and widget.mute_video.disabled and widget.chat_send.disabled
        assert "static snapshot" in widget.status.value
        assert "connected" in widget.text()
        assert widget.remotes["bob"].image.value[:2] == JPEG_MAGIC
        widget.leave_button.click()  # disabled in the browser; a no-op if clicked anyway
        await asyncio.sleep(0.2)
        assert alice.state == "joined"
    finally:
        widget.close()


_IPYTHON_DISPLAY = """
import json, sys
from IPython.core.interactiveshell import InteractiveShell

shell = InteractiveShell.instance()
import rtclab
from rtclab.peer import Peer

peer = Peer("x", "ws://127.0.0.1:9/signal", video=False, audio=False)
widgets_before = "ipywidgets" in sys.modules
data, _ = shell.display_formatter.format(peer)
print(json.dumps({"widgets_before": widgets_before, "mimetypes": sorted(data)}))
"""


def test_ipython_shows_a_peer_as_its_widget_without_the_core_importing_widgets() -> None:
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _IPYTHON_DISPLAY], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert not seen["widgets_before"]  # rtclab and rtclab.peer load no widget code
    assert "application/vnd.jupyter.widget-view+json" in seen["mimetypes"], seen
