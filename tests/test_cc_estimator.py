"""rtclab.cc without a network: the wrapped aiortc default, the loss-based AIMD, REMB pacing."""

from __future__ import annotations

import functools
import random
import re
from pathlib import Path

import pytest
from aiortc.rate import RemoteBitrateEstimator

from rtclab.cc import (
    BandwidthEstimator,
    DelayBasedEstimator,
    LossBasedAimd,
    LossWindow,
    ReceivedPacket,
    RembFeedback,
    load_estimator,
)
from rtclab.cc.estimator import ABS_SEND_TIME_UNITS_PER_S, estimator_name
from rtclab.peer.estimation import check_estimator_factory, install_estimator

SSRC = 1234


def bottleneck_feed(
    capacities: list[tuple[float, float]], send_bps: float = 800_000, fps: int = 30
) -> list[ReceivedPacket]:
    """Video-like packets through a FIFO bottleneck: ``capacities`` is ``[(until_s, bps)]``.

    Each frame is a burst of 1,200-byte packets sent at once; each leaves the bottleneck
    when the one before it has and it has been serialized at the capacity of that moment.
    """
    packets: list[ReceivedPacket] = []
    rng = random.Random(7)
    free_at = 0.0
    seq = 65_000  # wraps during the run
    duration = capacities[-1][0]
    for frame in range(int(duration * fps)):
        sent = 10.0 + frame / fps  # abs-send-time starts away from zero
        size = int(send_bps / fps / 8 * rng.uniform(0.8, 1.2))
        for _ in range(max(1, size // 1200)):
            capacity = next(bps for until, bps in capacities if sent - 10.0 < until)
            free_at = max(free_at, sent) + 1200 * 8 / capacity
            packets.append(
                ReceivedPacket(
                    arrival_time_ms=int(free_at * 1000) + 5,
                    abs_send_time=int(sent * ABS_SEND_TIME_UNITS_PER_S) % (1 << 24),
                    size=1200,
                    sequence_number=seq % (1 << 16),
                    ssrc=SSRC,
                )
            )
            seq += 1
    return packets


def test_the_wrapped_default_says_what_aiortc_says_packet_by_packet() -> None:
    """Capacity 2 Mbps, then 500 kbps (a queue builds: over-use), then 2 Mbps again."""
    feed = bottleneck_feed([(6.0, 2e6), (12.0, 5e5), (20.0, 2e6)])
    aiortc_own = RemoteBitrateEstimator()
    wrapped = DelayBasedEstimator()
    said: int | None = None
    sequence: list[int] = []
    usages: set[str] = set()
    for packet in feed:
        assert packet.abs_send_time is not None
        remb = aiortc_own.add(
            arrival_time_ms=packet.arrival_time_ms,
            abs_send_time=packet.abs_send_time,
            payload_size=packet.size,
            ssrc=packet.ssrc,
        )
        if remb is not None:
            said = remb[0]
            sequence.append(said)
        wrapped.on_packet(packet)
        assert wrapped.estimate(packet.arrival_time_ms) == said
        usages.add(wrapped.usage)
    # the feed exercised aiortc's estimator: it rose, backed off on over-use, rose again
    drops = [i for i in range(1, len(sequence)) if sequence[i] < sequence[i - 1] * 0.9]
    assert len(set(sequence)) > 20 and drops, sequence
    assert min(sequence[drops[0] :]) < 600_000 < max(sequence), sequence
    assert {"normal", "overusing"} <= usages  # what the detector saw, for a plot


def test_the_wrapped_default_skips_packets_without_abs_send_time() -> None:
    wrapped = DelayBasedEstimator()
    for i in range(2000):
        wrapped.on_packet(ReceivedPacket(i * 5, None, 1200, i, SSRC))
    assert wrapped.estimate(10_000) is None
    assert wrapped.inner.ssrcs == {}


def _packets(start_ms: int, count: int, *, seq: int, every_ms: int = 5, size: int = 1000,
             ssrc: int = SSRC, lose: set[int] = frozenset()) -> list[ReceivedPacket]:  # fmt: skip
    """``count`` packets from sequence number ``seq`` (wrapping), minus the offsets ``lose``."""
    return [
        ReceivedPacket(start_ms + i * every_ms, None, size, (seq + i) % (1 << 16), ssrc)
        for i in range(count)
        if i not in lose
    ]


def _run(estimator: LossBasedAimd, packets: list[ReceivedPacket]) -> list[int | None]:
    out = []
    for packet in packets:
        estimator.on_packet(packet)
        out.append(estimator.estimate(packet.arrival_time_ms))
    return out


def test_loss_window_counts_gaps_across_the_sequence_wrap() -> None:
    window = LossWindow()
    for packet in _packets(0, 100, seq=65_500, lose={10, 20, 30, 40, 50}):
        window.add(packet)
    loss, size = window.take()
    assert loss == pytest.approx(5 / 100) and size == 95 * 1000
    # the next interval starts after the highest: a late packet of the last one is ignored
    window.add(_packets(0, 1, seq=(65_500 + 10) % 65_536)[0])
    for packet in _packets(0, 50, seq=(65_500 + 100) % 65_536):
        window.add(packet)
    assert window.take()[0] == 0.0
    # retransmissions on an RTX ssrc are a stream of their own, without gaps
    window.add(ReceivedPacket(0, None, 1000, 7, 999))
    window.add(ReceivedPacket(1, None, 1000, 8, 999))
    assert window.take() == (0.0, 2000)
    assert window.take() == (None, 0)


def test_aimd_waits_one_interval_then_increases_additively_without_loss() -> None:
    aimd = LossBasedAimd(start_bps=300_000, increase_bps=25_000, interval_ms=500)
    # 1000 bytes every 5 ms = 1.6 Mbit/s arriving: the headroom allows 2.4 Mbit/s
    out = _run(aimd, _packets(0, 1000, seq=0))
    assert out[0] is None and out[99] is None  # 495 ms: no interval done yet
    assert out[100] == 300_000  # the first interval sets the start
    assert out[-1] == 300_000 + 8 * 25_000  # 5 s: 9 intervals, 8 increases
    assert aimd.last_loss == 0.0


def test_aimd_decreases_multiplicatively_above_the_loss_threshold() -> None:
    aimd = LossBasedAimd(start_bps=1_000_000, decrease=0.85, loss_threshold=0.02)
    _run(aimd, _packets(0, 101, seq=0))
    assert aimd.bps == 1_000_000
    lose = {i for i in range(100) if i % 10 == 3}  # 10 %
    out = _run(aimd, _packets(505, 100, seq=101, lose=lose))
    assert out[-1] == 850_000 and aimd.last_loss == pytest.approx(0.1, abs=0.02)
    for k in range(2, 40):  # it keeps falling, down to min_bps and no lower
        _run(aimd, _packets(5 + 500 * k, 100, seq=1 + 100 * k, lose=lose))
    assert aimd.bps == aimd.min_bps == 50_000


def test_aimd_holds_between_the_thresholds_and_under_the_headroom() -> None:
    aimd = LossBasedAimd(start_bps=500_000, loss_threshold=0.02, headroom=1.5)
    _run(aimd, _packets(0, 101, seq=0))
    out = _run(aimd, _packets(505, 100, seq=101, lose={50}))  # 1 %: below the threshold
    assert out[-1] == 525_000
    # 200 bytes every 5 ms = 320 kbit/s arriving: 1.5x that is under the estimate, so it holds
    out = _run(aimd, _packets(1005, 100, seq=201, size=200))
    assert out[-1] == 525_000
    # app-limited at 320 kbit/s from a low start: increases stop at 480 kbit/s
    low = LossBasedAimd(start_bps=300_000, increase_bps=100_000)
    out = _run(low, _packets(0, 2000, seq=0, size=200))
    assert out[-1] == 480_000


def test_aimd_rejects_nonsense_parameters() -> None:
    with pytest.raises(ValueError, match="min_bps"):
        LossBasedAimd(start_bps=10_000, min_bps=50_000)
    with pytest.raises(ValueError, match="decrease"):
        LossBasedAimd(decrease=1.2)


class Fixed:
    """The smallest estimator there is: always the same answer."""

    def __init__(self, bps: int | None) -> None:
        self.bps = bps
        self.seen = 0

    def on_packet(self, packet: ReceivedPacket) -> None:
        self.seen += 1

    def estimate(self, now_ms: int) -> int | None:
        return self.bps


def test_remb_feedback_paces_like_libwebrtc() -> None:
    fixed = Fixed(None)
    clock = iter(range(1000)).__next__
    feedback = RembFeedback(fixed, clock=lambda: float(clock()))
    assert feedback.on_packet(ReceivedPacket(0, None, 100, 1, SSRC)) is None  # says nothing
    fixed.bps = 500_000
    assert feedback.on_packet(ReceivedPacket(10, None, 100, 2, 77)) == (500_000, [SSRC, 77])
    assert feedback.on_packet(ReceivedPacket(100, None, 100, 3, SSRC)) is None  # too soon
    fixed.bps = 490_000  # down 2 %: waits for the interval
    assert feedback.on_packet(ReceivedPacket(150, None, 100, 4, SSRC)) is None
    assert feedback.on_packet(ReceivedPacket(210, None, 100, 5, SSRC)) == (490_000, [SSRC, 77])
    fixed.bps = 400_000  # down 18 %: at once
    assert feedback.on_packet(ReceivedPacket(220, None, 100, 6, SSRC)) == (400_000, [SSRC, 77])
    assert feedback.estimate_bps == 400_000 and fixed.seen == 6
    assert list(feedback.history) == [(0.0, 500_000), (1.0, 490_000), (2.0, 400_000)]
    assert feedback.name == "Fixed"
    assert RembFeedback(LossBasedAimd()).name == "loss-based AIMD"
    # labels for bwe_test's legend, from the factories a peer is given
    assert estimator_name(Fixed) == "Fixed" and estimator_name(LossBasedAimd) == "loss-based AIMD"
    assert estimator_name(functools.partial(LossBasedAimd, start_bps=1)) == "loss-based AIMD"
    assert estimator_name(DelayBasedEstimator) == "aiortc default (delay-based)"


def test_a_plain_class_is_an_estimator_and_peer_wants_its_factory() -> None:
    assert isinstance(Fixed(1), BandwidthEstimator)
    assert isinstance(DelayBasedEstimator(), BandwidthEstimator)
    assert check_estimator_factory(Fixed) is Fixed
    partial = functools.partial(LossBasedAimd, start_bps=400_000)
    assert check_estimator_factory(partial) is partial
    assert check_estimator_factory(None) is None
    with pytest.raises(TypeError, match=r"pass Fixed, not Fixed\(\)"):
        check_estimator_factory(Fixed(1))
    with pytest.raises(TypeError, match="must be a class or a function"):
        check_estimator_factory(42)
    assert load_estimator("rtclab.cc:LossBasedAimd") is LossBasedAimd  # for another process


def _docs_example() -> type:
    """The class docs/congestion-control.md tells a student to write, run as written."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "congestion-control.md").read_text()
    section = text.split("\n## Write your own\n", 1)[1].split("\n## ", 1)[0]
    names: dict[str, object] = {}
    exec(re.findall(r"```python\n(.*?)```", section, flags=re.S)[0], names)
    cls = names["GapHalver"]
    assert isinstance(cls, type)
    return cls


def test_the_docs_example_is_an_estimator_that_backs_off_on_loss() -> None:
    cls = _docs_example()
    assert isinstance(cls(), BandwidthEstimator) and check_estimator_factory(cls) is cls
    feedback = RembFeedback(cls())
    sent = [feedback.on_packet(p) for p in _packets(0, 400, seq=65_400)]  # 2 s, no loss
    values = list(dict.fromkeys(s[0] for s in sent if s is not None))
    assert values == [500_000, 525_000, 551_250, 578_812]  # +5 % at 500, 1000, 1500 ms
    remb = [feedback.on_packet(p) for p in _packets(2000, 10, seq=264, lose={5})]
    assert remb[0] == (607_752, [SSRC])  # grew at 2000 ms
    assert remb[5] == (607_752 // 2, [SSRC])  # a packet went missing: halved, sent at once


def test_an_estimator_that_cannot_be_made_leaves_aiortcs_in_place() -> None:
    """Both failures happen inside aiortc's track event: reported, never raised."""
    errors: list[str] = []

    def broken() -> Fixed:
        raise RuntimeError("typo in __init__")

    assert install_estimator(object(), broken, errors.append) is None
    assert install_estimator(object(), lambda: 42, errors.append) is None
    assert "could not be made" in errors[0] and "typo in __init__" in errors[0]
    assert "lacks on_packet(packet) and estimate(now_ms)" in errors[1]
