"""rtclab.qoe: the frame tag, the frames table and the QoE columns, pure parts and real peers."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import statistics
import time
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas.testing as pdt
import pytest

from rtclab import Lab, read_frames_csv
from rtclab.net import Link, Network
from rtclab.peer.media import luma_plane
from rtclab.peer.peer import Peer
from rtclab.qoe import (
    FrameTag,
    FrameTracker,
    FreezeDetector,
    TestPattern,
    interval_qoe,
    read_tag,
    stamp_tag,
    unwrap_capture_ms,
)
from rtclab.qoe.tag import BITS, TIME_MODULUS, _syndrome_tables, strip_height
from rtclab.signaling.server import SignalingServer
from rtclab.stats import StatsCollector, read_frames_parquet
from rtclab.stats.looplag import LoopLagMonitor

# -- the tag ------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(160, 120), (320, 240), (640, 480), (322, 240)])
def test_tag_round_trip(size: tuple[int, int]) -> None:
    luma = np.full((size[1], size[0]), 90, np.uint8)
    for frame_id, capture_ms in [(0, 0), (65535, TIME_MODULUS - 1), (1234, 99_999)]:
        stamp_tag(luma, FrameTag(frame_id, capture_ms, 1))
        assert read_tag(luma) == FrameTag(frame_id, capture_ms, 1)


def test_untagged_pictures_read_as_none() -> None:
    rng = np.random.default_rng(0)
    assert read_tag(np.full((240, 320), 16, np.uint8)) is None
    assert read_tag(np.full((240, 320), 235, np.uint8)) is None
    for _ in range(200):
        assert read_tag(rng.integers(0, 256, (240, 320), dtype=np.uint8)) is None


def test_crc_distance_leaves_a_margin_after_correction() -> None:
    """Correcting 2 cells is safe only if no 3 flips look like 2 or fewer (distance >= 6)."""
    single, errors = _syndrome_tables()
    assert len(errors) == BITS + BITS * (BITS - 1) // 2 and 0 not in errors
    for i, j, k in itertools.combinations(range(BITS), 3):
        syndrome = single[i] ^ single[j] ^ single[k]
        assert syndrome != 0 and syndrome not in errors


def test_corrupted_strips_are_rejected_never_misread() -> None:
    """Random cell flips and noise on the strip: a read is the true tag or None, never another."""
    rng = random.Random(7)
    width, height = 320, 240
    cell, tall = width // 40, strip_height(width) // 2
    accepted_wrong = rejected = 0
    for trial in range(3000):
        tag = FrameTag(rng.randrange(1 << 16), rng.randrange(TIME_MODULUS), 1)
        luma = np.full((height, width), 120, np.uint8)
        stamp_tag(luma, tag)
        flips = rng.choice([1, 2, 3, 4, 5, 8, 20])
        for bit in rng.sample(range(BITS), flips):
            row, col = divmod(bit, 40)
            y0 = height - (2 - row) * tall
            block = luma[y0 : y0 + tall, col * cell : (col + 1) * cell]
            block[:] = 251 - block  # flip the cell (16 <-> 235)
        if trial % 3 == 0:  # plus noise over the whole strip
            noise = np.random.default_rng(trial).normal(0, 40, (2 * tall, width))
            strip = luma[-2 * tall :].astype(np.float64) + noise
            luma[-2 * tall :] = np.clip(strip, 0, 255).astype(np.uint8)
        read = read_tag(luma)
        if read is None:
            rejected += 1
        elif read != tag:
            accepted_wrong += 1
    assert accepted_wrong == 0
    assert rejected > 500  # heavy damage is rejected, not "corrected" into something


def test_unwrap_capture_ms() -> None:
    now = 1_780_000_000_123
    assert unwrap_capture_ms((now - 80) % TIME_MODULUS, now) == now - 80
    assert unwrap_capture_ms((now + 30) % TIME_MODULUS, now) == now + 30  # a clock behind
    late = now - 2 * 3600 * 1000
    assert unwrap_capture_ms(late % TIME_MODULUS, now) == late


def test_pattern_is_deterministic_per_frame() -> None:
    pattern = TestPattern(320, 240)
    assert np.array_equal(pattern.luma(17, 5_000), pattern.luma(17, 5_000))
    assert not np.array_equal(pattern.luma(17, 5_000), pattern.luma(18, 5_000))
    assert read_tag(pattern.luma(17, 5_000)) == FrameTag(17, 5_000, 1)


# -- the tracker and the aggregation ------------------------------------------------------


def test_tracker_rows_missing_ids_and_quality() -> None:
    pattern = TestPattern(320, 240)
    tracker = FrameTracker("r", "s", quality_interval=0.0)
    t0 = time.time()
    rows: list[dict[str, Any]] = []
    for frame_id in [0, 1, 2, 5, 6]:  # 3 and 4 never arrive
        capture = t0 + frame_id / 15
        luma = pattern.luma(frame_id, int(capture * 1000))
        rows += tracker.on_frame(luma, capture + 0.040)
    ids = [r["frame_id"] for r in rows]
    assert ids == [0, 1, 2, 3, 4, 5, 6]
    missing = [r for r in rows if r["decode_t"] is None]
    assert [r["frame_id"] for r in missing] == [3, 4]
    received = [r for r in rows if r["decode_t"] is not None]
    assert all(39 <= r["latency_ms"] <= 41 for r in received)
    assert all(r["psnr_db"] == 100.0 and r["ssim"] == pytest.approx(1.0) for r in received)
    # an untagged frame in a gap was received: one id fewer counts as missing
    tracker.on_frame(np.full((240, 320), 16, np.uint8), t0 + 0.6)
    rows = tracker.on_frame(pattern.luma(9, int(t0 * 1000)), t0 + 0.7)
    assert [r["frame_id"] for r in rows if r["decode_t"] is None] == [7]
    assert tracker.frames_untagged == 1


def test_freeze_detector_w3c_rule() -> None:
    detector = FreezeDetector()
    t = 0.0
    for _ in range(30):
        t += 1 / 15
        assert detector.on_frame(t) is None
    t += 0.180  # < mean + 150 ms: no freeze
    assert detector.on_frame(t) is None
    t += 1.0
    assert detector.on_frame(t) == pytest.approx(1000.0)
    assert detector.freeze_count == 1
    assert detector.total_freezes_duration_ms == pytest.approx(1000.0)


def test_interval_qoe() -> None:
    now = datetime.now(timezone.utc)
    rows = [
        {"decode_t": now, "latency_ms": float(v), "psnr_db": None, "ssim": None}
        for v in range(1, 101)
    ]
    rows += [{"decode_t": None, "latency_ms": None}] * 3
    rows[0].update(psnr_db=40.0, ssim=0.9)
    out = interval_qoe(rows)
    assert out["latency_ms_p50"] == pytest.approx(50.5)
    assert out["latency_ms_p95"] == pytest.approx(95.05)
    assert out["frames_dropped"] == 3
    assert out["psnr_db"] == 40.0 and out["ssim"] == 0.9
    assert interval_qoe([]) == dict.fromkeys(out)


# -- real peers over the emulated network -------------------------------------------------


@contextlib.asynccontextmanager
async def _pair(
    link: Link | None = None, *, interval: float = 0.5, **sender: Any
) -> AsyncIterator[tuple[Peer, Peer, StatsCollector, Any]]:
    """A sender and a receiver through the emulated network (the sender's access link is
    ``link``), the receiver polled by a collector."""
    with Network(seed=1) as net:
        async with SignalingServer(port=0) as server:
            assert server.url is not None
            common: dict[str, Any] = {
                "room": "q",
                "ice": net.ice_config(turn=False, connect_timeout=8.0),
                "audio": False,
                "data": False,
            }
            host = net.host("s", link=link)
            tx = Peer("s", server.url, network=host, **common, **sender)
            rx = Peer("r", server.url, network=net.host("r"), video=False, **common)
            collector = StatsCollector(interval=interval)
            collector.add(rx)
            try:
                await rx.join()
                await tx.join()
                await tx.wait_connected(count=1, timeout=10, channels=False)
                await collector.start()
                yield tx, rx, collector, host
            finally:
                await collector.stop()
                await asyncio.gather(tx.close(), rx.close())


def _received(collector: StatsCollector, since: float = 0.0) -> list[dict[str, Any]]:
    cutoff = datetime.fromtimestamp(since, timezone.utc)
    return [
        r
        for r in collector.store.frame_rows
        if r["decode_t"] is not None and r["decode_t"] >= cutoff
    ]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("width", "height", "kbps", "share"),
    # the bar is 99 % at 320x240 under 150 kbps; at 160x120 under 100 kbps the
    # strip survives too, but a CI run read 117 of 120 (the blurriest frames right after
    # the encoder restarts at the cap are rejected by the CRC, never misread)
    [(320, 240, 150, 0.99), (160, 120, 100, 0.95)],
)
async def test_tag_decodes_under_a_bitrate_cap(
    width: int, height: int, kbps: int, share: float
) -> None:
    async with _pair(width=width, height=height) as (tx, rx, collector, _):
        tx.set_max_bitrate(kbps)
        await asyncio.sleep(8)
        await collector.poll()
        counters = rx.connections["s"].counters
    decoded = counters.frames_received["video"]
    tagged = decoded - counters.frames_untagged
    assert decoded > 80
    assert tagged / decoded >= share, (tagged, decoded)
    rates = collector.samples.query("kind == 'video' and direction == 'inbound'")["bitrate_kbps"]
    assert rates.iloc[2:].median() < kbps * 1.3  # the cap held


@pytest.mark.slow
async def test_latency_loopback_and_over_a_delayed_link() -> None:
    # at 30 fps: aiortc's jitter buffer hands a frame on when the next frame's first packet
    # arrives, so every frame waits one frame interval (67 ms at 15 fps; docs/qoe.md)
    async with _pair(fps=30) as (_, _, collector, _):
        await asyncio.sleep(4)
        await collector.poll()
        latencies = [r["latency_ms"] for r in _received(collector)]
    assert len(latencies) > 60
    assert statistics.median(latencies) < 60

    async with _pair(Link(delay_ms=100)) as (_, _, collector, host):
        await asyncio.sleep(4)
        await collector.poll()
        before = [r["latency_ms"] for r in _received(collector, time.time() - 2)]
        host.set_link(Link(delay_ms=200))
        changed = time.time()
        await asyncio.sleep(2.5)
        await collector.poll()
        after = [r["latency_ms"] for r in _received(collector, changed + 2.0)]
        samples = collector.samples
    assert 100 <= statistics.median(before) <= 200
    assert after and 200 <= statistics.median(after) <= 300
    video = samples.query("kind == 'video' and direction == 'inbound'")
    assert video["latency_ms_p50"].notna().sum() >= 4
    assert video["latency_ms_p95"].max() >= video["latency_ms_p50"].max()


@pytest.mark.slow
async def test_no_freeze_on_a_clean_link() -> None:
    async with _pair(interval=1.0) as (_, rx, collector, _), LoopLagMonitor() as lag:
        await asyncio.sleep(12)
        await collector.poll()
        video = collector.samples.query("kind == 'video' and direction == 'inbound'")
    assert len(video) >= 10
    # on a shared machine a stalled event loop stalls the receiver too: say how long it was
    freezes = [e.value for e in rx.events if e.event == "freeze"]
    assert video["freeze_count"].sum() == 0, (
        f"freezes {freezes} ms; loop lag max {lag.max_ms:.0f} ms"
    )
    assert video["frames_dropped"].sum() == 0
    # a tag read fails on about 1 frame in 150 of a moving VP8 picture (rtclab.qoe.tag):
    # over ~180 frames that is 0-3 frames, never a steady share (CI once saw 2 of 180)
    untagged = video["frames_untagged"].sum()
    assert untagged <= max(3, 0.02 * video["frames"].iloc[-1]), list(video["frames_untagged"])


@pytest.mark.slow
async def test_a_one_second_outage_is_one_freeze_of_about_a_second() -> None:
    async with _pair(Link(delay_ms=20)) as (_, rx, collector, host):
        await asyncio.sleep(3)
        host.set_link(Link(delay_ms=20, loss=0.9999))  # drops all (seeded: nothing passes)
        await asyncio.sleep(1.0)
        host.set_link(Link(delay_ms=20))
        await asyncio.sleep(3)
        await collector.poll()
        video = collector.samples.query("kind == 'video' and direction == 'inbound'")
        frames = collector.frames
        counters = rx.connections["s"].counters
    freezes = [e.value for e in rx.events if e.event == "freeze"]
    assert len(freezes) == counters.freeze_count >= 1
    assert sum(freezes) == pytest.approx(counters.total_freezes_duration_ms, abs=1)
    # the samples' per-interval columns add up to the counters (up to a freeze that ended
    # after the last poll read them)
    assert 1 <= video["freeze_count"].sum() <= counters.freeze_count
    total = video["total_freezes_duration_ms"].sum()
    # the freeze event carries the duration rounded to 0.1 ms, the columns do not
    assert max(freezes) - 0.05 <= total <= counters.total_freezes_duration_ms + 1
    assert 800 <= max(freezes) <= 1200, freezes
    # aiortc retransmits what NACKs ask for (its history outlasts 1 s of video): the frames
    # captured during the outage arrive late, not never
    assert frames["latency_ms"].max() >= 700


@pytest.mark.slow
async def test_psnr_follows_the_bitrate_cap() -> None:
    """640x480 (at 320x240 the pattern is too easy: 100 kbps already looks good)."""
    results = {}
    for kbps in (1500, 100):
        async with _pair(width=640, height=480) as (tx, _, collector, _):
            tx.set_max_bitrate(kbps)
            await asyncio.sleep(10)
            await collector.poll()
            frames = collector.frames
        settled = frames[frames["decode_t"] >= frames["decode_t"].min() + np.timedelta64(2, "s")]
        scored = settled.dropna(subset=["psnr_db"])
        assert len(scored) >= 12 and scored["ssim"].between(0, 1).all()
        results[kbps] = scored["psnr_db"].mean()
    assert results[1500] > 30
    assert results[1500] >= results[100] + 3, results


@pytest.mark.slow
async def test_lab_frames_spill_and_export(tmp_path: Path) -> None:
    lab = Lab(stats_interval=0.5, spill_dir=tmp_path / "spill")
    await lab.start()
    try:
        lab.collector.store.frames_max_rows = 20  # spill early
        await lab.peer("a", room="q", audio=False)
        await lab.peer("b", room="q", audio=False)
        await lab.wait_connected(timeout=15)
        await asyncio.sleep(3)
        await lab.collector.poll()
        frames = lab.frames
        csv_paths = lab.to_csv(tmp_path / "csv")
        parquet_paths = lab.to_parquet(tmp_path / "pq")
        samples = lab.samples
    finally:
        await lab.stop()
    assert len(lab.collector.store.frame_rows) == 20 and len(frames) > 40  # spilled, kept
    assert set(frames["peer"]) == {"a", "b"} and set(frames["remote"]) == {"a", "b"}
    received = frames.dropna(subset=["decode_t"])
    assert received["latency_ms"].between(0, 1000).all()
    assert frames["frame_id"].is_monotonic_increasing is False  # two streams interleave
    for (peer, _), group in frames.groupby(["peer", "remote"]):
        assert group["frame_id"].diff().dropna().ge(1).all(), peer
    pdt.assert_frame_equal(read_frames_csv(csv_paths["frames"]), frames)
    pdt.assert_frame_equal(read_frames_parquet(parquet_paths["frames"]), frames)
    video = samples.query("kind == 'video' and direction == 'inbound'")
    assert video["latency_ms_p50"].notna().any() and video["psnr_db"].notna().any()
    assert (video["ssim"].dropna().between(0.5, 1.0)).all()


@pytest.mark.slow
async def test_lab_qoe_off_stamps_and_reads_nothing() -> None:
    lab = Lab(stats_interval=0.5, qoe=False)
    await lab.start()
    try:
        a = await lab.peer("a", room="q", audio=False)
        await lab.peer("b", room="q", audio=False)
        await lab.wait_connected(timeout=15)
        await asyncio.sleep(2)
        await lab.collector.poll()
        assert not a.qoe and read_tag(luma_plane(a.connections["b"].latest_frame)) is None
        samples, frames = lab.samples, lab.frames
    finally:
        await lab.stop()
    assert frames.empty
    video = samples.query("kind == 'video' and direction == 'inbound'")
    assert video["frames"].max() > 10 and video["freeze_count"].isna().all()


@pytest.mark.slow
async def test_untagged_video_is_counted_never_guessed() -> None:
    """A sender with qoe=False sends the pattern without a tag: the receiver makes no frame
    rows, counts every frame as untagged and says so once (a file or camera looks the same)."""
    async with _pair(qoe=False) as (_, rx, collector, _):
        await asyncio.sleep(4)
        await collector.poll()
        counters = rx.connections["s"].counters
        video = collector.samples.query("kind == 'video' and direction == 'inbound'")
    assert counters.frames_received["video"] > 30
    assert counters.frames_untagged == counters.frames_received["video"]
    assert len(collector.frames) == 0 and not rx.frame_rows
    assert [e.value for e in rx.events if e.event == "video-untagged"] == [
        "no frame tag: no latency or quality"
    ]
    assert video["latency_ms_p50"].isna().all() and video["frames_untagged"].dropna().gt(0).all()
