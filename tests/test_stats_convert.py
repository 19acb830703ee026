"""Pure unit tests of rtclab.stats.convert with hand-built aiortc stats objects."""

from __future__ import annotations

import copy
import math
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from aiortc.stats import (
    RTCInboundRtpStreamStats,
    RTCOutboundRtpStreamStats,
    RTCRemoteInboundRtpStreamStats,
    RTCTransportStats,
)

from rtclab.ice.inspect import CandidateInfo, CandidatePair
from rtclab.model import PATH_COLUMNS, ConnectionCounters
from rtclab.stats.convert import (
    NUMERIC_COLUMNS,
    SAMPLE_COLUMNS,
    STRING_COLUMNS,
    ConnectionSnapshot,
    snapshot_to_rows,
)

T0 = datetime(2025, 1, 1, 12, 0, 0, tzinfo=timezone.utc)


def outbound(kind: str, packets: int, nbytes: int, ssrc: int = 1) -> RTCOutboundRtpStreamStats:
    return RTCOutboundRtpStreamStats(
        timestamp=T0,
        type="outbound-rtp",
        id=f"outbound-rtp_{kind}_{ssrc}",
        ssrc=ssrc,
        kind=kind,
        transportId="transport_1",
        packetsSent=packets,
        bytesSent=nbytes,
        trackId="track",
    )


def remote_inbound(
    kind: str,
    *,
    jitter: int,
    fraction_lost: int,
    rtt: float | None,
    lost: int = 0,
    received: int = 100,
    ssrc: int = 1,
) -> RTCRemoteInboundRtpStreamStats:
    return RTCRemoteInboundRtpStreamStats(
        timestamp=T0,
        type="remote-inbound-rtp",
        id=f"remote-inbound-rtp_{kind}_{ssrc}",
        ssrc=ssrc,
        kind=kind,
        transportId="transport_1",
        packetsReceived=received,
        packetsLost=lost,
        jitter=jitter,
        roundTripTime=rtt,  # type: ignore[arg-type]  # aiortc sets None before RTCP
        fractionLost=fraction_lost,
    )


def inbound(kind: str, *, received: int, lost: int, jitter: int) -> RTCInboundRtpStreamStats:
    return RTCInboundRtpStreamStats(
        timestamp=T0,
        type="inbound-rtp",
        id=f"inbound-rtp_{kind}",
        ssrc=7,
        kind=kind,
        transportId="transport_1",
        packetsReceived=received,
        packetsLost=lost,
        jitter=jitter,
    )


def transport_stats(sent: int, received: int) -> RTCTransportStats:
    return RTCTransportStats(
        timestamp=T0,
        type="transport",
        id="transport_1",
        packetsSent=sent // 100,
        packetsReceived=received // 100,
        bytesSent=sent,
        bytesReceived=received,
        iceRole="controlling",
        dtlsState="connected",
    )


def report(*stats: Any) -> dict[str, Any]:
    return {s.id: s for s in stats}


def host_pair() -> CandidatePair:
    def cand(port: int) -> CandidateInfo:
        return CandidateInfo("f", 1, "udp", 2130706431, "127.0.0.1", port, "host")

    return CandidatePair(local=cand(5000), remote=cand(6000), protocol="udp")


def snap(
    *,
    at: float = 0.0,
    rep: dict[str, Any] | None = None,
    counters: ConnectionCounters | None = None,
    transport: Any = None,
    pair: CandidatePair | None = None,
    sctp_rtt_ms: float | None = None,
    clock_rates: dict[str, int] | None = None,
) -> ConnectionSnapshot:
    return ConnectionSnapshot(
        peer="alice",
        remote="bob",
        t=T0 + timedelta(seconds=at),
        monotonic=100.0 + at,
        report=rep or {},
        transport=transport,
        candidate_pair=pair,
        counters=counters or ConnectionCounters(),
        connection_state="connected",
        sctp_rtt_ms=sctp_rtt_ms,
        clock_rates=clock_rates or {},
    )


def row(rows: list[dict[str, Any]], kind: str, direction: str) -> dict[str, Any]:
    matches = [r for r in rows if r["kind"] == kind and r["direction"] == direction]
    assert len(matches) == 1, (kind, direction, rows)
    return matches[0]


def test_column_lists_are_consistent() -> None:
    assert len(SAMPLE_COLUMNS) == len(set(SAMPLE_COLUMNS)) == 56
    assert set(NUMERIC_COLUMNS) | set(STRING_COLUMNS) | {"t"} == set(SAMPLE_COLUMNS)
    assert not set(NUMERIC_COLUMNS) & set(STRING_COLUMNS)


def test_jitter_uses_codec_clock_audio_48k_video_90k() -> None:
    rows = snapshot_to_rows(
        snap(
            rep=report(
                outbound("audio", 50, 5000),
                remote_inbound("audio", jitter=480, fraction_lost=0, rtt=0.01),
                outbound("video", 50, 50000),
                remote_inbound("video", jitter=900, fraction_lost=0, rtt=0.01),
                inbound("audio", received=50, lost=0, jitter=96),
                inbound("video", received=50, lost=0, jitter=1800),
            )
        ),
        None,
        elapsed_s=0.0,
    )
    assert row(rows, "audio", "outbound")["remote_jitter_ms"] == pytest.approx(10.0)
    assert row(rows, "video", "outbound")["remote_jitter_ms"] == pytest.approx(10.0)
    assert row(rows, "audio", "inbound")["jitter_ms"] == pytest.approx(2.0)
    assert row(rows, "video", "inbound")["jitter_ms"] == pytest.approx(20.0)


def test_jitter_uses_negotiated_clock_when_known() -> None:
    rows = snapshot_to_rows(
        snap(
            rep=report(inbound("audio", received=5, lost=0, jitter=80)), clock_rates={"audio": 8000}
        ),
        None,
        elapsed_s=0.0,
    )
    assert row(rows, "audio", "inbound")["jitter_ms"] == pytest.approx(10.0)


def test_fraction_lost_is_0_to_1_and_rtt_is_ms() -> None:
    rows = snapshot_to_rows(
        snap(
            rep=report(
                outbound("video", 1000, 10**6),
                remote_inbound(
                    "video", jitter=0, fraction_lost=64, rtt=0.0125, lost=40, received=960
                ),
            )
        ),
        None,
        elapsed_s=0.0,
    )
    out = row(rows, "video", "outbound")
    assert out["remote_fraction_lost"] == pytest.approx(0.25)
    assert out["rtcp_rtt_ms"] == pytest.approx(12.5)
    assert out["remote_packets_lost"] == 40
    assert out["remote_packets_received"] == 960
    assert out["packets_sent"] == 1000
    assert out["bytes_sent"] == 10**6
    full = snapshot_to_rows(
        snap(
            rep=report(
                outbound("video", 1, 1),
                remote_inbound("video", jitter=0, fraction_lost=255, rtt=None),
            )
        ),
        None,
        elapsed_s=0.0,
    )
    assert 0.0 <= row(full, "video", "outbound")["remote_fraction_lost"] <= 1.0
    assert row(full, "video", "outbound")["rtcp_rtt_ms"] is None  # no RTCP round trip yet


def test_first_sample_has_no_rates() -> None:
    counters = ConnectionCounters(frames_sent={"video": 10}, frames_received={"video": 9})
    counters.rtp_bytes_received["video"] = 1234
    rows = snapshot_to_rows(
        snap(rep=report(outbound("video", 10, 10000)), counters=counters), None, elapsed_s=0.0
    )
    for r in rows:
        assert r["bitrate_kbps"] is None
        assert r["frames_per_second"] is None
    assert row(rows, "video", "outbound")["frames"] == 10
    assert row(rows, "video", "inbound")["frames"] == 9


def test_bitrate_and_fps_from_deltas() -> None:
    c0 = ConnectionCounters(frames_sent={"video": 30}, frames_received={"audio": 100})
    c0.rtp_bytes_received["audio"] = 4000
    c1 = ConnectionCounters(frames_sent={"video": 45}, frames_received={"audio": 125})
    c1.rtp_bytes_received["audio"] = 6000
    s0 = snap(at=0.0, rep=report(outbound("video", 100, 10_000)), counters=c0)
    s1 = snap(at=0.5, rep=report(outbound("video", 150, 22_500)), counters=c1)
    rows = snapshot_to_rows(s1, s0, elapsed_s=0.5)
    out = row(rows, "video", "outbound")
    assert out["bitrate_kbps"] == pytest.approx(12_500 * 8 / 0.5 / 1000)  # 200 kbps
    assert out["frames_per_second"] == pytest.approx(30.0)
    inb = row(rows, "audio", "inbound")
    assert inb["bytes_received"] == 6000
    assert inb["bitrate_kbps"] == pytest.approx(2000 * 8 / 0.5 / 1000)
    assert inb["audio_frames_per_second"] == pytest.approx(50.0)
    assert inb["frames_per_second"] is None and inb["frames"] is None  # video's columns
    assert out["elapsed_s"] == 0.5
    assert out["t"] == T0 + timedelta(seconds=0.5)


def test_counter_reset_gives_no_rate() -> None:
    s0 = snap(at=0.0, rep=report(outbound("video", 100, 50_000)))
    s1 = snap(at=1.0, rep=report(outbound("video", 10, 1_000)))
    out = row(snapshot_to_rows(s1, s0, elapsed_s=1.0), "video", "outbound")
    assert out["bitrate_kbps"] is None


def test_inbound_fraction_lost_over_interval() -> None:
    s0 = snap(at=0.0, rep=report(inbound("video", received=100, lost=0, jitter=0)))
    s1 = snap(at=1.0, rep=report(inbound("video", received=190, lost=10, jitter=0)))
    inb = row(snapshot_to_rows(s1, s0, elapsed_s=1.0), "video", "inbound")
    assert inb["fraction_lost"] == pytest.approx(0.1)
    assert inb["packets_lost"] == 10
    assert inb["rtcp_rtt_ms"] is None and inb["sctp_rtt_ms"] is None
    assert inb["bytes_received"] is None  # nobody counted RTP bytes: unknown, not 0


def test_idle_sender_makes_no_outbound_row() -> None:
    """aiortc gives every recvonly transceiver a sender that never sends."""
    rows = snapshot_to_rows(
        snap(rep=report(outbound("audio", 0, 0), inbound("audio", received=5, lost=0, jitter=0))),
        None,
        elapsed_s=0.0,
    )
    assert [(r["kind"], r["direction"]) for r in rows] == [("audio", "inbound")]


def test_streams_of_one_kind_are_aggregated() -> None:
    rows = snapshot_to_rows(
        snap(
            rep=report(
                outbound("video", 10, 1000, ssrc=1),
                outbound("video", 20, 3000, ssrc=2),
                remote_inbound("video", jitter=90, fraction_lost=0, rtt=0.010, ssrc=1),
                remote_inbound("video", jitter=900, fraction_lost=128, rtt=0.030, ssrc=2),
            )
        ),
        None,
        elapsed_s=0.0,
    )
    out = row(rows, "video", "outbound")
    assert out["packets_sent"] == 30
    assert out["bytes_sent"] == 4000
    assert out["rtcp_rtt_ms"] == pytest.approx(20.0)
    assert out["remote_jitter_ms"] == pytest.approx(10.0)  # worst stream
    assert out["remote_fraction_lost"] == pytest.approx(0.5)


def test_data_only_connection_gives_data_and_transport_rows() -> None:
    c0 = ConnectionCounters()
    chat = c0.channel("chat")
    chat.messages_sent, chat.bytes_sent, chat.messages_received, chat.bytes_received = 2, 200, 1, 50
    cursor = c0.channel("cursor")
    cursor.messages_sent, cursor.bytes_sent, cursor.messages_dropped = 10, 100, 3
    c1 = ConnectionCounters()
    c1.channel("chat").__dict__.update(
        messages_sent=4, bytes_sent=1200, messages_received=1, bytes_received=50
    )
    c1.channel("cursor").__dict__.update(messages_sent=20, bytes_sent=200, messages_dropped=5)
    s0 = snap(at=0.0, counters=c0, transport=vars(transport_stats(1000, 500)), sctp_rtt_ms=1.5)
    s1 = snap(at=2.0, counters=c1, transport=transport_stats(3000, 900), sctp_rtt_ms=2.5)
    assert s1.report == {}

    first = snapshot_to_rows(s0, None, elapsed_s=0.0)
    assert sorted((r["kind"], r["direction"]) for r in first) == [
        ("data", "inbound"),
        ("data", "outbound"),
        ("transport", "inbound"),
        ("transport", "outbound"),
    ]
    assert row(first, "data", "outbound")["bytes_sent"] == 300
    assert row(first, "data", "outbound")["messages_dropped"] == 3

    rows = snapshot_to_rows(s1, s0, elapsed_s=2.0)
    d_out = row(rows, "data", "outbound")
    assert d_out["messages_sent"] == 24
    assert d_out["bytes_sent"] == 1400
    assert d_out["bitrate_kbps"] == pytest.approx((1400 - 300) * 8 / 2 / 1000)
    assert d_out["sctp_rtt_ms"] == 2.5
    d_in = row(rows, "data", "inbound")
    assert d_in["messages_received"] == 1
    assert d_in["bytes_received"] == 50
    assert d_in["bitrate_kbps"] == 0.0
    t_out = row(rows, "transport", "outbound")
    assert t_out["bytes_sent"] == 3000
    assert t_out["packets_sent"] == 30
    assert t_out["bitrate_kbps"] == pytest.approx(2000 * 8 / 2 / 1000)
    assert t_out["bytes_received"] is None  # one direction per row
    t_in = row(rows, "transport", "inbound")
    assert t_in["bytes_received"] == 900
    assert t_in["bitrate_kbps"] == pytest.approx(400 * 8 / 2 / 1000)
    assert t_in["sctp_rtt_ms"] == 2.5


def test_no_channels_and_no_transport_gives_no_rows() -> None:
    assert snapshot_to_rows(snap(), None, elapsed_s=0.0) == []


def test_path_columns_on_every_row() -> None:
    counters = ConnectionCounters()
    counters.channel("chat").bytes_sent = 1
    rows = snapshot_to_rows(
        snap(
            rep=report(outbound("audio", 5, 500), inbound("video", received=5, lost=0, jitter=0)),
            counters=counters,
            transport=transport_stats(1, 1),
            pair=host_pair(),
        ),
        None,
        elapsed_s=0.0,
    )
    assert len(rows) == 6
    for r in rows:
        assert list(r) == SAMPLE_COLUMNS
        assert r["local_candidate_type"] == "host"
        assert r["remote_candidate_type"] == "host"
        assert r["protocol"] == "udp"
        assert r["relay_protocol"] is None
        assert r["local_address"] == "127.0.0.1:5000"
        assert r["remote_address"] == "127.0.0.1:6000"
        assert r["connection_state"] == "connected"
        assert (r["peer"], r["remote"]) == ("alice", "bob")


def test_relay_pair_and_ipv6_address() -> None:
    relay = CandidateInfo("r", 1, "udp", 5, "::1", 3478, "relay", "10.0.0.1", 4000)
    pair = CandidatePair(
        local=relay, remote=host_pair().remote, protocol="udp", relay_protocol="tcp"
    )
    rows = snapshot_to_rows(snap(transport=transport_stats(1, 1), pair=pair), None, elapsed_s=0.0)
    assert rows[0]["local_candidate_type"] == "relay"
    assert rows[0]["relay_protocol"] == "tcp"
    assert rows[0]["local_address"] == "[::1]:3478"


def test_pair_columns_are_the_path_columns_and_describe_names_the_path() -> None:
    relay = CandidateInfo("r", 1, "udp", 5, "::1", 3478, "relay", "10.0.0.1", 4000)
    pair = CandidatePair(
        local=relay, remote=host_pair().remote, protocol="udp", relay_protocol="tcp"
    )
    assert list(pair.columns()) == PATH_COLUMNS
    assert pair.describe() == "relay/host udp (relay over tcp) [::1]:3478 -> 127.0.0.1:6000"


def test_no_nan_sneaks_in() -> None:
    rows = snapshot_to_rows(snap(transport=transport_stats(1, 1)), None, elapsed_s=0.0)
    for r in rows:
        for c in NUMERIC_COLUMNS:
            assert r[c] is None or not math.isnan(r[c])


def test_each_rtt_source_has_its_own_column() -> None:
    """Issue 17 item 10: RTCP (media) and SCTP (data, transport) round trips differ (1.73 vs
    4.73 ms were seen at one time): never one column for both, never one in place of the
    other."""
    rep = report(
        outbound("audio", 5, 500),
        remote_inbound("audio", jitter=0, fraction_lost=0, rtt=0.002),
        outbound("video", 5, 500),
        remote_inbound("video", jitter=0, fraction_lost=0, rtt=0.004),
    )
    counters = ConnectionCounters()
    counters.channel("chat")
    rows = snapshot_to_rows(
        snap(rep=rep, counters=counters, transport=transport_stats(1, 1), sctp_rtt_ms=7.0),
        None,
        elapsed_s=0.0,
    )
    assert "rtt_ms" not in SAMPLE_COLUMNS
    assert row(rows, "video", "outbound")["rtcp_rtt_ms"] == pytest.approx(4.0)
    assert row(rows, "audio", "outbound")["rtcp_rtt_ms"] == pytest.approx(2.0)
    for kind in ("audio", "video"):
        assert row(rows, kind, "outbound")["sctp_rtt_ms"] is None
    for kind in ("data", "transport"):
        for direction in ("outbound", "inbound"):
            r = row(rows, kind, direction)
            assert r["sctp_rtt_ms"] == 7.0 and r["rtcp_rtt_ms"] is None
    # media only (no SCTP): the transport rows say nothing rather than borrow RTCP's
    media_only = snap(rep=rep, transport=transport_stats(1, 1))
    rows = snapshot_to_rows(media_only, None, elapsed_s=0.0)
    assert row(rows, "transport", "outbound")["sctp_rtt_ms"] is None
    assert row(rows, "transport", "outbound")["rtcp_rtt_ms"] is None


def test_outbound_rows_name_remote_reported_counts_as_remote() -> None:
    """Issue 17 item 8: video at t=2 s showed packets_sent 53 beside packets_received 13 (the
    receiver's lagging RTCP count), which reads as 75 % loss. Local counts keep the plain
    names; what the remote reported is named remote_*."""
    rep = report(
        outbound("video", 53, 50_000),
        remote_inbound("video", jitter=900, fraction_lost=0, rtt=0.002, lost=0, received=13),
    )
    out = row(snapshot_to_rows(snap(rep=rep), None, elapsed_s=2.0), "video", "outbound")
    assert out["packets_sent"] == 53
    assert out["remote_packets_received"] == 13 and out["remote_packets_lost"] == 0
    assert out["remote_fraction_lost"] == 0.0 and out["remote_jitter_ms"] == pytest.approx(10.0)
    for local in ("packets_received", "packets_lost", "fraction_lost", "jitter_ms"):
        assert out[local] is None, local


def test_frames_per_second_is_video_only() -> None:
    """Issue 17 item 9: ~50 audio frames/s and 15 video frames/s shared one column."""
    c0 = ConnectionCounters(
        frames_sent={"audio": 0, "video": 0}, frames_received={"audio": 0, "video": 0}
    )
    c1 = ConnectionCounters(
        frames_sent={"audio": 50, "video": 15}, frames_received={"audio": 48, "video": 15}
    )
    s0 = snap(at=0.0, rep=report(outbound("audio", 1, 100), outbound("video", 1, 100)), counters=c0)
    s1 = snap(
        at=1.0, rep=report(outbound("audio", 51, 9000), outbound("video", 31, 90_000)), counters=c1
    )
    rows = snapshot_to_rows(s1, s0, elapsed_s=1.0)
    for direction, audio_fps in (("outbound", 50.0), ("inbound", 48.0)):
        audio, video = row(rows, "audio", direction), row(rows, "video", direction)
        assert video["frames_per_second"] == pytest.approx(15.0)
        assert audio["frames_per_second"] is None and audio["frames"] is None
        assert audio["audio_frames_per_second"] == pytest.approx(audio_fps)
        assert video["audio_frames_per_second"] is None


def test_rows_carry_the_link_each_way() -> None:
    """Outbound rows carry the uplink's capacity and queue delay, inbound rows the downlink's."""
    current = snap(at=1.0, transport={"bytesSent": 2000, "bytesReceived": 1000})
    current.link = {
        "up": {"capacity_kbps": 800.0, "queue_delay_ms": 120.0},
        "down": {"capacity_kbps": None, "queue_delay_ms": 0.0},
    }
    rows = snapshot_to_rows(current, None, elapsed_s=1.0)
    out, inb = row(rows, "transport", "outbound"), row(rows, "transport", "inbound")
    assert (out["capacity_kbps"], out["queue_delay_ms"]) == (800.0, 120.0)
    assert (inb["capacity_kbps"], inb["queue_delay_ms"]) == (None, 0.0)
    plain = row(
        snapshot_to_rows(snap(transport={"bytesSent": 1}), None, elapsed_s=0),
        "transport",
        "outbound",
    )
    assert plain["capacity_kbps"] is None and plain["queue_delay_ms"] is None


def test_counters_snapshot_is_a_deep_copy_as_of_now() -> None:
    counters = ConnectionCounters(frames_sent={"video": 3}, freeze_count=1, frames_tracked=True)
    counters.rtp_stream("inbound", "video").nack_count = 2
    counters.channel("chat").messages_sent = 5
    snapshot = counters.snapshot()
    assert snapshot == copy.deepcopy(counters)
    counters.frames_sent["video"] += 1
    counters.rtp_stream("inbound", "video").nack_count += 1
    counters.channel("chat").messages_sent += 1
    counters.rtp_stream("outbound", "audio")
    assert snapshot.frames_sent == {"video": 3}
    assert snapshot.inbound_rtp["video"].nack_count == 2
    assert snapshot.channels["chat"].messages_sent == 5
    assert "audio" not in snapshot.outbound_rtp
