"""The source relay: one local source for every connection, drawn only when one asks."""

from __future__ import annotations

import asyncio

import pytest
from aiortc.mediastreams import MediaStreamError

from rtclab.peer.media import TestPatternTrack
from rtclab.peer.relay import SourceRelay
from rtclab.qoe.tag import read_tag


def _frame_id(frame: object) -> int:
    tag = read_tag(frame.to_ndarray(format="gray"))  # type: ignore[attr-defined]
    assert tag is not None
    return tag.frame_id


async def test_subscribers_share_frames_read_on_demand_skipping_the_missed() -> None:
    source = TestPatternTrack(160, 120, 30)
    relay = SourceRelay()
    first, second = relay.subscribe(source), relay.subscribe(source)
    a, b = await asyncio.gather(first.recv(), second.recv())
    assert a is b and _frame_id(a) == 0  # one read, one drawing, for both
    await asyncio.sleep(0.3)  # nobody asks: nothing is drawn
    c = await first.recv()
    assert 8 <= _frame_id(c) <= 12  # the frame due now, not frame 1 drawn late
    assert await second.recv() is c  # taken by one, still pending for the other
    # a direct consumer (a recorder) that falls behind still gets every frame
    direct = TestPatternTrack(160, 120, 30)
    await direct.recv()
    await asyncio.sleep(0.2)
    assert [_frame_id(await direct.recv()) for _ in range(3)] == [1, 2, 3]
    first.stop()
    with pytest.raises(MediaStreamError):
        await first.recv()
    source.stop()  # the source ends: the remaining subscriber's next frame says so
    with pytest.raises(MediaStreamError):
        await second.recv()
