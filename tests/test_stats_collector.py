"""StatsCollector against real aiortc connections on loopback (and fakes for the edge cases).

The media run is done once per module (~4 s): a 320x240 ~15 fps video track and an audio
track from ``a`` to ``b``, polled by a running collector. The independent bitrate measure is
the sum of RTP *payload* bytes of every video packet that reaches ``b``'s receiver (a wrapper
around ``RTCRtpReceiver._handle_rtp_packet``): payload bytes are what aiortc's outbound
``bytesSent`` counts (the RTCP SR octet count), and counting at the far end proves the number
is what crossed the network, not what the sender believes it sent.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aioice.ice
import av
import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest
import pytest_asyncio
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, VideoStreamTrack

from rtclab.model import ConnectionCounters
from rtclab.stats import (
    EVENT_COLUMNS,
    SAMPLE_COLUMNS,
    StatsCollector,
    StatsSource,
    read_events_csv,
    read_events_parquet,
    read_frames_csv,
    read_frames_parquet,
    read_samples_csv,
    read_samples_parquet,
)

CONFIG = RTCConfiguration(iceServers=[])  # None would make aiortc use Google's STUN server


@dataclass
class Source:
    """A minimal StatsSource: what a Peer hands the collector."""

    name: str
    targets: list[tuple[str, Any, ConnectionCounters]] = field(default_factory=list)

    def stats_targets(self) -> Iterable[tuple[str, Any, ConnectionCounters]]:
        return list(self.targets)


def _loopback_only() -> pytest.MonkeyPatch:
    mp = pytest.MonkeyPatch()
    mp.setattr(aioice.ice, "get_host_addresses", lambda *a, **k: ["127.0.0.1"])
    return mp


async def connect(a: RTCPeerConnection, b: RTCPeerConnection) -> None:
    await a.setLocalDescription(await a.createOffer())
    await b.setRemoteDescription(a.localDescription)
    await b.setLocalDescription(await b.createAnswer())
    await a.setRemoteDescription(b.localDescription)

    async def connected() -> None:
        while not (a.connectionState == b.connectionState == "connected"):
            assert "failed" not in (a.connectionState, b.connectionState)
            await asyncio.sleep(0.02)

    await asyncio.wait_for(connected(), 10)


class PatternVideo(VideoStreamTrack):
    """320x240 frames at ~15 fps: a moving gradient plus a noisy block, so VP8 has work."""

    def __init__(self, counters: ConnectionCounters, fps: int = 15) -> None:
        super().__init__()
        self._counters = counters
        self._fps = fps
        self._n = 0
        self._t0: float | None = None
        self._rng = np.random.default_rng(1)
        self._base = np.tile(np.arange(320, dtype=np.uint8), (360, 1))

    async def recv(self) -> av.VideoFrame:
        if self._t0 is None:
            self._t0 = time.monotonic()
        await asyncio.sleep(max(0.0, self._t0 + self._n / self._fps - time.monotonic()))
        img = np.roll(self._base, self._n * 4, axis=1)
        img[40:120, 40:140] = self._rng.integers(0, 256, (80, 100), dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(img, format="yuv420p")
        frame.pts = self._n * 90_000 // self._fps
        frame.time_base = Fraction(1, 90_000)
        self._n += 1
        self._counters.frames_sent["video"] = self._counters.frames_sent.get("video", 0) + 1
        return frame


class CountedAudio(AudioStreamTrack):
    def __init__(self, counters: ConnectionCounters) -> None:
        super().__init__()
        self._counters = counters

    async def recv(self) -> Any:
        frame = await super().recv()
        self._counters.frames_sent["audio"] = self._counters.frames_sent.get("audio", 0) + 1
        return frame


@dataclass
class ReceiverTally:
    """Independent count at the receiving end: RTP payload bytes per kind."""

    payload_bytes: dict[str, int] = field(default_factory=dict)


def count_rtp(pc: RTCPeerConnection, counters: ConnectionCounters, tally: ReceiverTally) -> None:
    """Fill counters.rtp_* (what a Peer does) and the independent tally, as packets arrive."""
    for transceiver in pc.getTransceivers():
        receiver, kind = transceiver.receiver, transceiver.kind
        original = receiver._handle_rtp_packet

        async def counted(
            packet: Any, arrival_time_ms: int, *, _o: Any = original, _k: str = kind
        ) -> None:
            size = len(packet.payload)
            tally.payload_bytes[_k] = tally.payload_bytes.get(_k, 0) + size
            counters.rtp_bytes_received[_k] = counters.rtp_bytes_received.get(_k, 0) + size
            counters.rtp_packets_received[_k] = counters.rtp_packets_received.get(_k, 0) + 1
            await _o(packet, arrival_time_ms)

        receiver._handle_rtp_packet = counted  # type: ignore[method-assign]


async def consume(track: MediaStreamTrack, counters: ConnectionCounters) -> None:
    try:
        while True:
            await track.recv()
            kind = track.kind
            counters.frames_received[kind] = counters.frames_received.get(kind, 0) + 1
    except MediaStreamError:
        pass


@dataclass
class MediaRun:
    samples: pd.DataFrame
    events: pd.DataFrame
    # (sample elapsed_s, receiver video payload bytes read right after that poll, monotonic)
    tally_at_poll: list[tuple[float, int, float]]
    rows_per_poll: list[int]
    pending_after_stop: list[asyncio.Task[Any]]
    collector: StatsCollector


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def media_run() -> AsyncIterator[MediaRun]:
    mp = _loopback_only()
    a = RTCPeerConnection(CONFIG)
    b = RTCPeerConnection(CONFIG)
    consumers: list[asyncio.Task[None]] = []
    collector = StatsCollector(interval=0.5)
    try:
        ca, cb, tally = ConnectionCounters(), ConnectionCounters(), ReceiverTally()
        a.addTrack(CountedAudio(ca))
        a.addTrack(PatternVideo(ca))

        @b.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            consumers.append(asyncio.ensure_future(consume(track, cb)))

        @a.on("connectionstatechange")
        def on_state() -> None:
            collector.record_event("a", "b", "connection-state", a.connectionState)

        await a.setLocalDescription(await a.createOffer())
        await b.setRemoteDescription(a.localDescription)
        count_rtp(b, cb, tally)
        await b.setLocalDescription(await b.createAnswer())
        await a.setRemoteDescription(b.localDescription)

        collector.add(Source("a", [("b", a, ca)]))
        collector.add(Source("b", [("a", b, cb)]))
        tally_at_poll: list[tuple[float, int, float]] = []
        rows_per_poll: list[int] = []

        def on_rows(rows: list[dict[str, Any]]) -> None:
            rows_per_poll.append(len(rows))
            if rows:
                now = time.monotonic()
                tally_at_poll.append(
                    (rows[0]["elapsed_s"], tally.payload_bytes.get("video", 0), now)
                )

        collector.on_sample(on_rows)
        await collector.start()
        await collector.start()  # idempotent
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 8.0
        await asyncio.sleep(3.0)
        while loop.time() < deadline:  # until RTCP has produced an RTT for both kinds
            s = collector.samples
            out = s[(s.peer == "a") & (s.direction == "outbound") & s.kind.isin(["audio", "video"])]
            if (
                out.groupby("kind").rtcp_rtt_ms.count().reindex(["audio", "video"]).fillna(0).min()
                >= 2
            ):
                break
            await asyncio.sleep(0.25)
        await collector.stop()
        await collector.stop()  # idempotent
        pending = [
            t for t in asyncio.all_tasks() if "rtclab-stats" in t.get_name() and not t.done()
        ]
        yield MediaRun(
            samples=collector.samples,
            events=collector.events,
            tally_at_poll=tally_at_poll,
            rows_per_poll=rows_per_poll,
            pending_after_stop=pending,
            collector=collector,
        )
    finally:
        await collector.stop()
        await asyncio.gather(a.close(), b.close(), return_exceptions=True)
        for task in consumers:
            task.cancel()
        await asyncio.gather(*consumers, return_exceptions=True)
        mp.undo()


def rows_of(df: pd.DataFrame, peer: str, kind: str, direction: str) -> pd.DataFrame:
    selected: pd.DataFrame = df[(df.peer == peer) & (df.kind == kind) & (df.direction == direction)]
    return selected


def test_frame_shape_and_dtypes(media_run: MediaRun) -> None:
    s = media_run.samples
    assert list(s.columns) == SAMPLE_COLUMNS
    assert str(s.t.dtype) == "datetime64[us, UTC]"
    for column in SAMPLE_COLUMNS:
        if column in ("t",):
            continue
        if pd.api.types.is_numeric_dtype(s[column]):
            assert s[column].dtype == "float64", column
    assert s.kind.dtype == object and s.peer.dtype == object
    assert set(zip(s.peer, s.kind, s.direction, strict=True)) >= {
        ("a", "audio", "outbound"),
        ("a", "video", "outbound"),
        ("a", "transport", "outbound"),
        ("a", "transport", "inbound"),
        ("b", "audio", "inbound"),
        ("b", "video", "inbound"),
    }
    # b only receives: its idle senders must not masquerade as outbound media streams
    assert rows_of(s, "b", "video", "outbound").empty
    assert list(media_run.events.columns) == EVENT_COLUMNS
    assert "pair-changed" not in set(media_run.events.event)  # the path never moved
    assert "connected" in set(media_run.events.value.astype(str))


def test_path_columns_are_host_host_loopback(media_run: MediaRun) -> None:
    s = media_run.samples.dropna(subset=["local_candidate_type"])
    assert not s.empty
    assert set(s.local_candidate_type) == {"host"} and set(s.remote_candidate_type) == {"host"}
    assert set(s.protocol) == {"udp"}
    assert s.relay_protocol.isna().all()
    assert s.local_address.str.startswith("127.0.0.1:").all()
    assert s.remote_address.str.startswith("127.0.0.1:").all()
    a_rows, b_rows = s[s.peer == "a"], s[s.peer == "b"]
    assert set(a_rows.local_address) == set(b_rows.remote_address)


def test_units_are_plausible(media_run: MediaRun) -> None:
    s = media_run.samples
    for kind in ("audio", "video"):
        out = rows_of(s, "a", kind, "outbound")
        rtt = out.rtcp_rtt_ms.dropna()
        assert len(rtt) >= 1, f"no RTT for {kind} after RTCP"
        assert ((rtt > 0) & (rtt < 100)).all(), rtt  # ms on loopback, not s nor µs
        assert out.remote_fraction_lost.dropna().between(0, 1).all()
        jitter = pd.concat(
            [out.remote_jitter_ms, rows_of(s, "b", kind, "inbound").jitter_ms]
        ).dropna()
        assert len(jitter) and jitter.between(0, 200).all(), jitter  # ms, not timestamp units
        inb = rows_of(s, "b", kind, "inbound")
        assert inb.bytes_received.dropna().iloc[-1] > 0
        assert inb.packets_received.dropna().iloc[-1] > 0
        assert inb.fraction_lost.dropna().between(0, 1).all()
    transport = rows_of(s, "a", "transport", "outbound")
    assert transport.sctp_rtt_ms.isna().all() and transport.rtcp_rtt_ms.isna().all()  # no SCTP
    fps_out = rows_of(s, "a", "video", "outbound").frames_per_second.dropna()
    fps_in = rows_of(s, "b", "video", "inbound").frames_per_second.dropna()
    assert 10 <= fps_out.median() <= 20, fps_out
    assert 8 <= fps_in.median() <= 20, fps_in
    audio = rows_of(s, "a", "audio", "outbound")
    assert audio.frames_per_second.isna().all()  # video's column
    assert 40 <= audio.audio_frames_per_second.dropna().median() <= 60  # 20 ms audio frames
    first = s[s.elapsed_s == s.elapsed_s.min()]
    assert first.bitrate_kbps.isna().all()  # no previous sample, no rate


def test_outbound_bitrate_matches_bytes_counted_at_receiver(media_run: MediaRun) -> None:
    s = rows_of(media_run.samples, "a", "video", "outbound").set_index("elapsed_s")
    ratios, sent_kbit, received_kbit = [], 0.0, 0.0
    for (e0, b0, m0), (e1, b1, m1) in zip(
        media_run.tally_at_poll, media_run.tally_at_poll[1:], strict=False
    ):
        if e1 not in s.index or pd.isna(s.bitrate_kbps[e1]) or b0 == 0:
            continue
        independent = (b1 - b0) * 8 / (m1 - m0) / 1000
        ratios.append(s.bitrate_kbps[e1] / independent)
        sent_kbit += s.bitrate_kbps[e1] * (e1 - e0)
        received_kbit += (b1 - b0) * 8 / 1000
    assert len(ratios) >= 3, ratios
    assert 0.7 <= statistics.median(ratios) <= 1.3, ratios
    assert 0.7 <= sent_kbit / received_kbit <= 1.3
    assert s.bitrate_kbps.dropna().median() > 50  # real video, not a trickle


def test_transport_carries_at_least_the_media(media_run: MediaRun) -> None:
    s = media_run.samples
    last = s.elapsed_s.max()
    sent = s[(s.peer == "a") & (s.elapsed_s == last) & (s.direction == "outbound")]
    media = sent[sent.kind.isin(["audio", "video"])].bytes_sent.sum()
    transport = sent[sent.kind == "transport"].bytes_sent.iloc[0]
    assert transport > media > 0  # SRTP adds headers and auth tags; RTCP rides along too


def test_collector_stopped_cleanly(media_run: MediaRun) -> None:
    assert media_run.pending_after_stop == []
    assert not media_run.collector.running
    assert len(media_run.rows_per_poll) >= 6


def test_csv_round_trip(media_run: MediaRun, tmp_path: Path) -> None:
    paths = media_run.collector.to_csv(tmp_path / "out")
    assert set(paths) == {"samples", "events", "frames"}
    pdt.assert_frame_equal(read_samples_csv(paths["samples"]), media_run.collector.samples)
    pdt.assert_frame_equal(read_events_csv(paths["events"]), media_run.collector.events)
    # plain aiortc tracks carry no frame tag: an empty frames table, still typed
    pdt.assert_frame_equal(read_frames_csv(paths["frames"]), media_run.collector.frames)


def test_parquet_round_trip(media_run: MediaRun, tmp_path: Path) -> None:
    paths = media_run.collector.to_parquet(tmp_path)
    pdt.assert_frame_equal(read_samples_parquet(paths["samples"]), media_run.collector.samples)
    pdt.assert_frame_equal(read_events_parquet(paths["events"]), media_run.collector.events)
    pdt.assert_frame_equal(read_frames_parquet(paths["frames"]), media_run.collector.frames)
    plain = pd.read_parquet(paths["samples"])  # readable without rtclab too
    assert list(plain.columns) == SAMPLE_COLUMNS


def test_parquet_without_pyarrow_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import builtins

    real_import = builtins.__import__

    def no_pyarrow(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "pyarrow" or name.startswith("pyarrow."):
            raise ImportError("No module named 'pyarrow'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    with pytest.raises(ImportError, match="pip install pyarrow"):
        StatsCollector().to_parquet(tmp_path)


# -- data-channel-only connection ----------------------------------------------------------


@pytest.fixture
async def data_pcs() -> AsyncIterator[tuple[RTCPeerConnection, RTCPeerConnection]]:
    mp = _loopback_only()
    a, b = RTCPeerConnection(CONFIG), RTCPeerConnection(CONFIG)
    try:
        yield a, b
    finally:
        await asyncio.gather(a.close(), b.close(), return_exceptions=True)
        mp.undo()


async def test_data_channel_only_connection_still_has_rows(
    data_pcs: tuple[RTCPeerConnection, RTCPeerConnection],
) -> None:
    a, b = data_pcs
    ca, cb = ConnectionCounters(), ConnectionCounters()
    channel = a.createDataChannel("chat")
    all_received = asyncio.Event()

    @b.on("datachannel")
    def on_channel(remote_channel: Any) -> None:
        @remote_channel.on("message")  # type: ignore[untyped-decorator]
        def on_message(message: str | bytes) -> None:
            counters = cb.channel(remote_channel.label)
            counters.messages_received += 1
            counters.bytes_received += len(message)
            if counters.messages_received == 50:
                all_received.set()

    await connect(a, b)
    opened = asyncio.get_running_loop().create_future()
    if channel.readyState == "open":
        opened.set_result(None)
    else:
        channel.on("open", lambda: None if opened.done() else opened.set_result(None))
    await asyncio.wait_for(opened, 5)
    assert await a.getStats() == {}  # the trap: aiortc reports nothing for data-only

    collector = StatsCollector(interval=0.5)  # never started: polled by hand below
    collector.add(Source("a", [("b", a, ca)]))
    collector.add(Source("b", [("a", b, cb)]))
    await collector.poll()
    payload = b"x" * 1000
    for _ in range(50):
        channel.send(payload)
        ca.channel("chat").messages_sent += 1
        ca.channel("chat").bytes_sent += len(payload)
        await asyncio.sleep(0.005)
    await asyncio.wait_for(all_received.wait(), 5)
    await asyncio.sleep(0.3)  # let SACKs come back so SCTP has measured an RTT
    rows = await collector.poll()

    def one(peer: str, kind: str, direction: str) -> dict[str, Any]:
        (row,) = [
            r for r in rows if (r["peer"], r["kind"], r["direction"]) == (peer, kind, direction)
        ]
        return row

    assert {r["kind"] for r in rows} == {"data", "transport"}
    d_out = one("a", "data", "outbound")
    assert d_out["bytes_sent"] == 50_000 and d_out["messages_sent"] == 50
    assert d_out["bitrate_kbps"] > 0
    assert d_out["local_candidate_type"] == "host"
    d_in = one("b", "data", "inbound")
    assert d_in["bytes_received"] == 50_000 and d_in["bitrate_kbps"] > 0
    t_out = one("a", "transport", "outbound")
    assert t_out["bytes_sent"] > 50_000 and t_out["bitrate_kbps"] > 0
    assert one("b", "transport", "inbound")["bytes_received"] > 50_000
    assert t_out["sctp_rtt_ms"] is not None and 0 < t_out["sctp_rtt_ms"] < 1000
    assert t_out["connection_state"] == "connected"

    # a closed pc: one final sample, no exception, then it stops producing rows
    await a.close()
    rows = await collector.poll()
    assert {r["connection_state"] for r in rows if r["peer"] == "a"} == {"closed"}
    rows = await collector.poll()
    assert [r for r in rows if r["peer"] == "a"] == []


# -- fakes: slow and broken targets, bounds, start/stop -------------------------------------


class FakePC:
    """Just enough of an RTCPeerConnection: getStats, state, no transports."""

    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.delay = delay
        self.fail = fail
        self.connectionState = "connected"
        self.sctp: Any = None

    async def getStats(self) -> dict[str, Any]:
        if self.fail:
            raise RuntimeError("boom")
        await asyncio.sleep(self.delay)
        return {}

    def getTransceivers(self) -> list[Any]:
        return []


def data_counters(nbytes: int = 10) -> ConnectionCounters:
    counters = ConnectionCounters()
    counters.channel("chat").bytes_sent = nbytes
    return counters


def test_fake_source_satisfies_protocol() -> None:
    source: StatsSource = Source("x")
    assert source.name == "x"


async def test_slow_or_failing_target_does_not_stall_or_raise() -> None:
    collector = StatsCollector(interval=1.0, timeout=0.2)
    collector.add(
        Source(
            "p",
            [
                ("slow", FakePC(delay=30), data_counters()),
                ("broken", FakePC(fail=True), data_counters()),
                ("fine", FakePC(), data_counters()),
            ],
        )
    )
    started = time.monotonic()
    rows = await collector.poll()
    assert time.monotonic() - started < 1.0
    assert {r["remote"] for r in rows} == {"fine"}
    await collector.poll()
    events = collector.events
    assert list(events.event[events.remote == "slow"]) == ["stats-timeout", "stats-timeout"]
    assert list(events.event[events.remote == "broken"]) == ["stats-error"]  # once, not per poll
    assert "boom" in events.value[events.remote == "broken"].iloc[0]


async def test_a_source_removed_mid_poll_keeps_the_rows_it_was_measured_for() -> None:
    # lab.stop() or a peer leaving removes a source while a poll awaits its snapshots
    collector = StatsCollector(interval=1.0)
    leaving = Source("leaving", [("x", FakePC(delay=0.05), data_counters())])
    collector.add(leaving)
    collector.add(Source("staying", [("y", FakePC(delay=0.05), data_counters())]))
    poll = asyncio.ensure_future(collector.poll())
    await asyncio.sleep(0.01)  # the poll now waits on both snapshots
    collector.remove(leaving)
    rows = await poll
    assert {r["peer"] for r in rows} == {"leaving", "staying"}
    assert {r["peer"] for r in await collector.poll()} == {"staying"}


async def test_max_rows_bound_and_spill(tmp_path: Path) -> None:
    spill = tmp_path / "spill.csv"
    collector = StatsCollector(interval=1.0, window=None, max_rows=10, spill_path=spill)
    counters = data_counters()
    collector.add(Source("p", [("r", FakePC(), counters)]))
    for i in range(15):  # 2 data rows per poll
        counters.channel("chat").bytes_sent = 10 * (i + 1)
        await collector.poll()
        assert len(collector.store.rows) <= 10
    spilled, whole = read_samples_csv(spill), collector.samples
    assert len(collector.store.rows) == 10 and len(spilled) == 20
    assert len(whole) == 30  # samples: what spilled, then what is in memory
    pdt.assert_frame_equal(whole.iloc[:20], spilled)
    assert whole.elapsed_s.is_monotonic_increasing
    assert list(whole[whole.direction == "outbound"].bytes_sent) == [
        10.0 * (i + 1) for i in range(15)
    ]
    assert str(spilled.t.dtype) == "datetime64[us, UTC]"


async def test_window_bound() -> None:
    collector = StatsCollector(interval=1.0, window=0.25, max_rows=None)
    collector.add(Source("p", [("r", FakePC(), data_counters())]))
    for _ in range(6):
        await collector.poll()
        await asyncio.sleep(0.1)
    await collector.poll()
    kept = collector.rows_within(60.0)
    assert kept[-1]["elapsed_s"] - kept[0]["elapsed_s"] <= 0.25
    assert kept[-1]["elapsed_s"] >= 0.5


async def test_rows_within_and_recent_rows_read_without_a_frame() -> None:
    collector = StatsCollector(interval=1.0, window=None, max_rows=None)
    assert collector.rows_within(10.0) == [] and collector.recent_rows() == []
    collector.add(Source("p", [("r", FakePC(), data_counters())]))
    for _ in range(5):
        await collector.poll()
        await asyncio.sleep(0.1)
    everything = collector.rows_within(60.0)
    assert len(everything) == len(collector.samples) >= 5
    recent = collector.rows_within(0.25)
    latest = everything[-1]["elapsed_s"]
    assert recent and recent == everything[-len(recent) :]  # a tail, oldest first
    assert all(latest - row["elapsed_s"] <= 0.25 for row in recent)
    assert len(recent) < len(everything)
    assert collector.recent_rows(2) == everything[::-1][:2]  # newest first


async def test_events_bounded_and_values_round_trip(tmp_path: Path) -> None:
    collector = StatsCollector(max_rows=3, spill_path=tmp_path / "s.csv")
    for i in range(5):
        collector.record_event("p", None if i % 2 else "r", "gathered", {"n": i, "ms": 1.5})
    assert len(collector.store.event_rows) == 3
    spilled = read_events_csv(tmp_path / "s.events.csv")
    assert list(spilled.value) == [{"n": 0, "ms": 1.5}, {"n": 1, "ms": 1.5}]
    assert spilled.remote.iloc[1] is None
    assert [v["n"] for v in collector.events.value] == [0, 1, 2, 3, 4]  # nothing lost
    paths = collector.to_csv(tmp_path / "csv")
    pdt.assert_frame_equal(read_events_csv(paths["events"]), collector.events)
    raw = pd.read_csv(paths["events"], dtype=object)
    assert json.loads(raw.value.iloc[2]) == {"n": 2, "ms": 1.5}  # dicts as JSON text


async def test_start_stop_leaves_no_tasks_and_listeners_unsubscribe() -> None:
    collector = StatsCollector(interval=0.02)
    collector.add(Source("p", [("r", FakePC(), data_counters())]))
    seen: list[int] = []
    unsubscribe = collector.on_sample(lambda rows: seen.append(len(rows)))
    collector.on_sample(lambda rows: 1 / 0)  # a broken listener must not stop polling
    await collector.start()
    assert collector.running
    await asyncio.sleep(0.15)
    unsubscribe()
    count = len(seen)
    await asyncio.sleep(0.06)
    await collector.stop()
    await collector.stop()
    assert not collector.running
    assert count >= 3 and len(seen) == count
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert [t for t in others if not t.done()] == []
    # empty frames keep their schema
    empty = StatsCollector()
    assert list(empty.samples.columns) == SAMPLE_COLUMNS
    assert str(empty.samples.t.dtype) == "datetime64[us, UTC]"
    assert list(empty.events.columns) == EVENT_COLUMNS


async def test_pair_change_is_an_event() -> None:
    def pair(port: int) -> Any:
        cand = aioice.Candidate("f", 1, "udp", 1, "127.0.0.1", port, "host")
        return SimpleNamespace(local_candidate=cand, remote_candidate=cand)

    connection = SimpleNamespace(_nominated={1: pair(1000)})
    dtls = SimpleNamespace(transport=SimpleNamespace(_connection=connection))
    pc = FakePC()
    pc.sctp = SimpleNamespace(transport=dtls, _srtt=0.004)
    collector = StatsCollector()
    collector.add(Source("p", [("r", pc, data_counters())]))
    rows = await collector.poll()
    assert rows[0]["local_address"] == "127.0.0.1:1000" and rows[0]["sctp_rtt_ms"] == 4.0
    await collector.poll()
    assert collector.events.empty
    connection._nominated[1] = pair(2000)
    rows = await collector.poll()
    assert rows[0]["local_address"] == "127.0.0.1:2000"
    assert list(collector.events.event) == ["pair-changed"]
    assert "127.0.0.1:2000" in collector.events.value.iloc[0]


async def test_window_bounds_memory_only_and_exports_return_everything(tmp_path: Path) -> None:
    """Issue 17 item 2: rows older than the window went missing from ``samples`` and
    ``to_csv``/``to_parquet``; now they spill to the file and come back from all three."""
    collector = StatsCollector(
        interval=1.0, window=0.25, max_rows=None, spill_path=tmp_path / "spill" / "s.csv"
    )
    counters = data_counters()
    collector.add(Source("p", [("r", FakePC(), counters)]))
    for i in range(8):
        counters.channel("chat").bytes_sent = 10 * (i + 1)
        await collector.poll()
        await asyncio.sleep(0.1)
    memory = collector.rows_within(60.0)
    assert memory[-1]["elapsed_s"] - memory[0]["elapsed_s"] <= 0.25  # memory stays bounded
    assert len(memory) < 16
    whole = collector.samples
    assert len(whole) == 16 and whole.elapsed_s.min() == 0.0  # the first poll is still there
    sent = whole[whole.direction == "outbound"].bytes_sent
    assert list(sent) == [10.0 * (i + 1) for i in range(8)]
    paths = collector.to_csv(tmp_path / "csv")
    pdt.assert_frame_equal(read_samples_csv(paths["samples"]), whole)
    parquet = collector.to_parquet(tmp_path / "pq")
    pdt.assert_frame_equal(read_samples_parquet(parquet["samples"]), whole)
    collector.clear()
    assert collector.samples.empty and not (tmp_path / "spill" / "s.csv").exists()


async def test_plain_pandas_reads_the_csv_files(tmp_path: Path) -> None:
    """Issue 17 item 11: plain ``pd.read_csv`` (with the README's ``parse_dates``/``dtype``)
    gets timestamps, text values as text and an empty ``relay_protocol`` as text."""
    collector = StatsCollector(max_rows=2, spill_path=tmp_path / "spill.csv")
    counters = data_counters()
    collector.add(Source("p", [("r", FakePC(), counters)]))
    collector.record_event("p", "r", "room", "demo")
    collector.record_event("p", "r", "connected", 12.5)
    collector.record_event("p", "r", "selected-pair", {"local": "host"})
    collector.record_event("p", None, "note", None)
    for _ in range(3):
        await collector.poll()
    paths = collector.to_csv(tmp_path / "out")
    samples = pd.read_csv(paths["samples"], parse_dates=["t"], dtype={"relay_protocol": str})
    assert isinstance(samples["t"].dtype, pd.DatetimeTZDtype) and len(samples) == 6
    relay = samples["relay_protocol"]
    assert not pd.api.types.is_float_dtype(relay) and relay.isna().all()  # text, not float64
    assert samples["peer"].tolist() == ["p"] * 6 and samples["bytes_sent"].dtype == "float64"
    events = pd.read_csv(paths["events"], parse_dates=["t"])
    assert isinstance(events["t"].dtype, pd.DatetimeTZDtype)
    assert events["value"].tolist()[0] == "demo"  # not '"demo"'
    assert events["value"].tolist()[1] == "12.5"
    assert json.loads(events["value"].tolist()[2]) == {"local": "host"}
    assert pd.isna(events["value"].tolist()[3])
    back = read_events_csv(paths["events"])
    assert back["value"].tolist() == ["demo", 12.5, {"local": "host"}, None]


async def test_the_poll_at_stop_reports_no_rates() -> None:
    """A poll a fraction of an interval after the last one (the demo's final poll) gives its
    counters but no rates: 10 bytes over 50 ms is not a bitrate worth plotting."""
    collector = StatsCollector(interval=1.0)  # polled by hand
    counters = data_counters(0)
    collector.add(Source("p", [("r", FakePC(), counters)]))
    await collector.poll()
    await asyncio.sleep(0.6)
    counters.channel("chat").bytes_sent = 6000
    (regular,) = [r for r in await collector.poll() if r["direction"] == "outbound"]
    counters.channel("chat").bytes_sent = 6500
    (partial,) = [r for r in await collector.poll() if r["direction"] == "outbound"]
    assert regular["bitrate_kbps"] == pytest.approx(6000 * 8 / 1000 / 0.6, rel=0.3)
    assert partial["bitrate_kbps"] is None and partial["bytes_sent"] == 6500
