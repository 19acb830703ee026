"""Copies of a received track (rtclab.peer.taps): what a recorder or a preview gets."""

from __future__ import annotations

import asyncio

import pytest
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from rtclab.peer.taps import Taps


class _Source(MediaStreamTrack):
    kind = "video"

    async def recv(self) -> str:  # the peer's reader would call this; the tests feed by hand
        raise MediaStreamError


async def test_a_buffered_copy_gets_every_frame_then_ends_with_its_source() -> None:
    taps, source = Taps(), _Source()
    copy = taps.add(source)
    for frame in ("f1", "f2", "f3"):
        taps.deliver(source, frame)
    taps.end(source)
    assert [await copy.recv() for _ in range(3)] == ["f1", "f2", "f3"]
    with pytest.raises(MediaStreamError):
        await copy.recv()
    assert copy.readyState == "ended"


async def test_an_unbuffered_copy_keeps_only_the_newest_frame() -> None:
    taps, source = Taps(), _Source()
    copy = taps.add(source, buffered=False)
    for frame in ("f1", "f2", "f3"):
        taps.deliver(source, frame)
    assert await copy.recv() == "f3"
    waiting = asyncio.ensure_future(copy.recv())
    await asyncio.sleep(0)
    assert not waiting.done()  # nothing newer yet
    taps.deliver(source, "f4")
    assert await waiting == "f4"


async def test_a_stopped_copy_is_fed_no_more_and_other_copies_go_on() -> None:
    taps, source = Taps(), _Source()
    stopped, kept = taps.add(source), taps.add(source)
    stopped.stop()
    taps.deliver(source, "f1")
    assert await kept.recv() == "f1"
    assert stopped._queue.empty()
    with pytest.raises(MediaStreamError):
        await stopped.recv()


async def test_a_copy_of_an_ended_source_ends_at_once() -> None:
    taps, source = Taps(), _Source()
    taps.end(source)
    with pytest.raises(MediaStreamError):
        await asyncio.wait_for(taps.add(source).recv(), 1.0)


async def test_copies_follow_their_own_source_not_another_of_the_same_kind() -> None:
    taps, old, new = Taps(), _Source(), _Source()
    old_copy, new_copy = taps.add(old), taps.add(new)
    taps.end(old)  # a renegotiation replaced the track
    taps.deliver(new, "n1")
    with pytest.raises(MediaStreamError):
        await old_copy.recv()
    assert await new_copy.recv() == "n1"
