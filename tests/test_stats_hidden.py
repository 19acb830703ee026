"""Pure unit tests: the E-model MOS, feedback and keyframe parsing, the hidden-stats columns
and the rule that a rate needs an interval long enough to mean it."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    pack_remb_fci,
)
from test_stats_convert import inbound, outbound, remote_inbound, report, row, snap

from rtclab.model import ConnectionCounters, RtpStreamCounters
from rtclab.peer.feedback import InboundPacketCounter, is_keyframe, rtcp_feedback
from rtclab.stats.convert import snapshot_to_rows
from rtclab.stats.emodel import (
    DEFAULT_R,
    burst_ratio,
    delay_impairment,
    effective_equipment_impairment,
    mos,
    mos_from_r,
    r_factor,
)

# --------------------------------------------------------------------------- E-model


def test_default_path_scores_the_g107_default() -> None:
    assert r_factor(0.0, 0.0) == pytest.approx(93.2)
    assert mos(0.0, 0.0) == pytest.approx(4.41, abs=0.005)


@pytest.mark.parametrize(
    ("r", "expected"),
    [(90.0, 4.34), (80.0, 4.03), (70.0, 3.60), (60.0, 3.10), (50.0, 2.58)],
)
def test_mos_from_r_matches_g107_annex_b(r: float, expected: float) -> None:
    assert mos_from_r(r) == pytest.approx(expected, abs=0.01)


def test_mos_from_r_is_bounded() -> None:
    assert mos_from_r(-5.0) == 1.0
    assert mos_from_r(120.0) == 4.5


@pytest.mark.parametrize("delay_ms", [50.0, 100.0, 150.0, 200.0, 250.0, 300.0])
def test_delay_impairment_agrees_with_the_published_fit(delay_ms: float) -> None:
    """Cole and Rosenbluth (2001) fit G.107's Id with default parameters as
    0.024 d + 0.11 (d - 177.3) H(d - 177.3); the full G.107 terms stay within 0.5 of it."""
    fit = 0.024 * delay_ms + 0.11 * max(delay_ms - 177.3, 0.0)
    assert delay_impairment(delay_ms) == pytest.approx(fit, abs=0.5)


def test_delay_impairment_is_zero_at_zero_and_grows() -> None:
    assert delay_impairment(0.0) == pytest.approx(0.0, abs=1e-9)
    values = [delay_impairment(d) for d in range(0, 600, 25)]
    assert values == sorted(values)


def test_effective_equipment_impairment_g113_example() -> None:
    """G.711 with PLC (Ie 0, Bpl 25.1) at 2 % random loss: Ie,eff = 95 * 2 / 27.1 = 7.0."""
    assert effective_equipment_impairment(2.0, 1.0, ie=0.0, bpl=25.1) == pytest.approx(7.01, 0.01)
    assert effective_equipment_impairment(0.0) == 0.0
    # bursty loss hurts more than the same random loss
    assert effective_equipment_impairment(5.0, 3.0) > effective_equipment_impairment(5.0, 1.0)


def test_burst_ratio_random_and_bursty() -> None:
    # 10 losses one at a time: as random as it gets, BurstR 1 (1 / (p + q) < 1 is clamped)
    assert burst_ratio(10, 10, 90) == 1.0
    # a Markov chain with p = 0.05, q = 0.25: BurstR = 1 / 0.3
    assert burst_ratio(5, 20, 100) == pytest.approx(1 / 0.3)
    # the same 10 losses in 2 bursts: longer bursts, a ratio well above 1
    assert burst_ratio(2, 10, 90) > 3.0
    assert burst_ratio(0, 0, 100) == 1.0


def test_clean_and_bad_calls() -> None:
    """The issue's two reference calls: a clean LAN and 10 % loss with 200 ms one way
    (+ aiortc's 80 ms jitter buffer)."""
    assert mos(1.0 + 80.0, 0.0) >= 4.0
    assert mos(200.0 + 80.0, 10.0) < 3.5
    assert DEFAULT_R - r_factor(280.0, 10.0) > 30


# --------------------------------------------------------------------------- parsing


def test_rtcp_feedback_classifies_nack_pli_fir_remb() -> None:
    nack = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=1, media_ssrc=2)
    nack.lost = [5, 6]
    assert rtcp_feedback(nack) == ("nack", None)
    assert rtcp_feedback(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=2)) == ("pli", None)
    assert rtcp_feedback(RtcpPsfbPacket(fmt=RTCP_PSFB_FIR, ssrc=1, media_ssrc=2)) == ("fir", None)
    remb = RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0, fci=pack_remb_fci(300_000, [2]))
    assert rtcp_feedback(remb) == ("remb", 300_000)
    assert rtcp_feedback(RtcpRrPacket(ssrc=1)) is None
    assert rtcp_feedback(RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0, fci=b"x")) is None


def test_vp8_keyframes_from_aiortc_payloads() -> None:
    """Payloads as aiortc's encoder makes them: descriptor with a 15-bit picture id."""
    key = bytes.fromhex("9080f6a250")  # S=1, X, I, M; VP8 tag 0x50: P bit 0
    inter = bytes.fromhex("9080f6a371")  # tag 0x71: P bit 1
    continuation = bytes.fromhex("8080f6a3ff")  # S=0
    assert is_keyframe("video/VP8", key) is True
    assert is_keyframe("video/VP8", inter) is False
    assert is_keyframe("video/VP8", continuation) is None
    assert is_keyframe("video/VP8", bytes.fromhex("1050")) is True  # no extension
    assert is_keyframe("audio/opus", key) is None


def test_h264_keyframes() -> None:
    assert is_keyframe("video/H264", bytes([0x65, 0])) is True  # IDR slice
    assert is_keyframe("video/H264", bytes([0x41, 0])) is False  # non-IDR slice
    stap = bytes([0x18, 0, 2, 0x67, 0, 0, 2, 0x68, 0])  # STAP-A: SPS, PPS
    assert is_keyframe("video/H264", stap) is True
    assert is_keyframe("video/H264", bytes([0x1C, 0x85, 0])) is True  # FU-A start of IDR
    assert is_keyframe("video/H264", bytes([0x1C, 0x05, 0])) is None  # FU-A middle


@dataclass
class _Packet:
    ssrc: int
    sequence_number: int
    timestamp: int = 0
    payload_type: int = 111
    payload: bytes = b""


def test_inbound_counter_counts_gaps_as_loss_bursts() -> None:
    stream = RtpStreamCounters()
    count = InboundPacketCounter(None, None, stream, "audio")
    for seq in [65530, 65531, 65534, 65535, 0, 3, 2, 4]:  # wraps; 2 is late, not a gap
        count(_Packet(ssrc=9, sequence_number=seq))
    assert (stream.loss_bursts, stream.burst_packets_lost) == (2, 4)


# --------------------------------------------------------------------------- columns


def test_hidden_columns_on_media_rows() -> None:
    c0, c1 = ConnectionCounters(), ConnectionCounters()
    out1 = c1.rtp_stream("outbound", "video")
    out1.nack_count, out1.pli_count, out1.keyframes = 4, 1, 3
    out1.retransmitted_packets_sent, out1.remb_bps = 9, 420_000
    in1 = c1.rtp_stream("inbound", "video")
    in1.nack_count, in1.fir_count, in1.keyframes, in1.remb_bps = 2, 1, 2, 380_000
    s0 = snap(at=0.0, rep=report(outbound("video", 1, 100)), counters=c0)
    s1 = snap(
        at=1.0,
        rep=report(outbound("video", 100, 9000), inbound("video", received=90, lost=0, jitter=0)),
        counters=c1,
    )
    s1.encoder_targets_bps = {"video": 300_000}
    rows = snapshot_to_rows(s1, s0, elapsed_s=1.0)
    out, inb = row(rows, "video", "outbound"), row(rows, "video", "inbound")
    assert (out["nack_count"], out["pli_count"], out["fir_count"]) == (4, 1, 0)
    assert out["keyframes_encoded"] == 3 and out["keyframes_decoded"] is None
    assert out["retransmitted_packets_sent"] == 9
    assert out["target_bitrate_kbps"] == 300.0
    assert out["available_outgoing_bitrate_kbps"] == 420.0
    assert out["estimate_kbps"] is None
    assert (inb["nack_count"], inb["pli_count"], inb["fir_count"]) == (2, 0, 1)
    assert inb["keyframes_decoded"] == 2 and inb["estimate_kbps"] == 380.0
    assert inb["retransmitted_packets_sent"] is None and inb["mos"] is None


def _audio_snapshots(
    *, rtt: float | None, lost: int, bursts: int
) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    c0 = ConnectionCounters(rtp_packets_received={"audio": 0})
    c1 = ConnectionCounters(rtp_packets_received={"audio": 100 - lost})
    c1.rtp_stream("inbound", "audio").loss_bursts = bursts
    c1.rtp_stream("inbound", "audio").burst_packets_lost = lost
    rin = remote_inbound("audio", jitter=0, fraction_lost=0, rtt=rtt)
    s0 = snap(
        at=0.0,
        rep=report(outbound("audio", 1, 10), inbound("audio", received=0, lost=0, jitter=0)),
        counters=c0,
    )
    s1 = snap(
        at=1.0,
        rep=report(
            outbound("audio", 50, 5000),
            rin,
            inbound("audio", received=100 - lost, lost=lost, jitter=0),
        ),
        counters=c1,
    )
    s1.playout_delay_ms = {"audio": 80.0}
    first = snapshot_to_rows(s0, None, elapsed_s=0.0)
    return first, snapshot_to_rows(s1, s0, elapsed_s=1.0)


def test_mos_on_inbound_audio_rows() -> None:
    _, clean = _audio_snapshots(rtt=0.002, lost=0, bursts=0)
    assert row(clean, "audio", "inbound")["mos"] == pytest.approx(mos(81.0, 0.0))
    assert row(clean, "audio", "outbound")["mos"] is None
    _, lossy = _audio_snapshots(rtt=0.4, lost=10, bursts=10)
    _, bursty = _audio_snapshots(rtt=0.4, lost=10, bursts=2)
    lossy_mos = row(lossy, "audio", "inbound")["mos"]
    assert lossy_mos == pytest.approx(mos(280.0, 10.0, burst_ratio(10, 10, 90)))
    assert lossy_mos < 3.5
    assert row(bursty, "audio", "inbound")["mos"] < lossy_mos
    # no RTT measured (nothing sent, no SCTP): no MOS rather than one that ignores delay
    _, blind = _audio_snapshots(rtt=None, lost=0, bursts=0)
    assert row(blind, "audio", "inbound")["mos"] is None


def test_a_partial_interval_reports_no_rate() -> None:
    """The poll at stop comes 0.1 s after the last one: 3 frames over 0.1 s is not 30 fps."""
    c0 = ConnectionCounters(frames_sent={"video": 150}, frames_received={"video": 150})
    c1 = ConnectionCounters(frames_sent={"video": 153}, frames_received={"video": 153})
    s0 = snap(at=10.0, rep=report(outbound("video", 1000, 100_000)), counters=c0)
    s1 = snap(at=10.1, rep=report(outbound("video", 1010, 102_000)), counters=c1)
    short = snapshot_to_rows(s1, s0, elapsed_s=10.1, min_interval_s=0.5)
    for direction in ("outbound", "inbound"):
        r = row(short, "video", direction)
        assert r["frames_per_second"] is None
        assert r["frames"] == 153  # counters still reported
    assert row(short, "video", "outbound")["bitrate_kbps"] is None
    # the same interval with no minimum gives the spike the rule removes
    spike = snapshot_to_rows(s1, s0, elapsed_s=10.1)
    assert row(spike, "video", "outbound")["frames_per_second"] == pytest.approx(30.0)
    s2 = snap(at=10.6, rep=report(outbound("video", 1060, 112_000)), counters=c1)
    long_enough = snapshot_to_rows(s2, s0, elapsed_s=10.6, min_interval_s=0.5)
    assert row(long_enough, "video", "outbound")["frames_per_second"] == pytest.approx(3 / 0.6)
    assert not math.isnan(row(long_enough, "video", "outbound")["bitrate_kbps"])
