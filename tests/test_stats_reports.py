"""Browser ``stats`` reports: parsed and bounded, only from joined clients, never relayed,
handed to the server's stats listeners and appended to a collector in its units."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import Any

import pytest

from rtclab import Lab
from rtclab.signaling.client import SignalingClient
from rtclab.signaling.hub import Hub, Reported
from rtclab.signaling.protocol import MAX_STATS_ROWS, ProtocolError, Stats, parse
from rtclab.signaling.server import SignalingServer
from rtclab.stats.collector import StatsCollector
from rtclab.stats.convert import SAMPLE_COLUMNS
from rtclab.stats.emodel import mos

ROW = {
    "remote": "b",
    "kind": "video",
    "direction": "inbound",
    "jitter_ms": 3.5,
    "bitrate_kbps": 250,
    "local_candidate_type": "host",
}


def test_parse_accepts_flat_rows_and_refuses_anything_else() -> None:
    message = parse(json.dumps({"type": "stats", "rows": [ROW]}))
    assert isinstance(message, Stats) and message.rows == (ROW,)
    for bad in (
        {"rows": {}},
        {"rows": [1]},
        {"rows": [{"x": {"nested": 1}}]},
        {"rows": [{"x": "y" * 300}]},
        {"rows": [ROW] * (MAX_STATS_ROWS + 1)},
    ):
        refused = parse(json.dumps({"type": "stats", **bad}))
        assert isinstance(refused, ProtocolError) and refused.code == "invalid-message", bad


def test_hub_takes_reports_from_members_only_and_relays_nothing() -> None:
    hub: Hub[str] = Hub()
    hub.connect("c1")
    hub.connect("c2")
    report = json.dumps({"type": "stats", "rows": [ROW]})
    out = hub.receive_data("c1", report)
    assert [(c, m.to_dict()["code"]) for c, m in out.deliveries] == [("c1", "not-joined")]
    hub.receive_data("c1", json.dumps({"type": "join", "roomId": "r", "userId": "a"}))
    hub.receive_data("c2", json.dumps({"type": "join", "roomId": "r", "userId": "b"}))
    out = hub.receive_data("c1", report)
    assert out.deliveries == []  # nothing for anybody
    assert list(out.events) == [Reported("c1", "r", "a", (ROW,))] and hub.stats_reports == 1


def test_collector_add_rows_normalises_and_stamps() -> None:
    collector = StatsCollector()
    heard: list[Any] = []
    collector.on_sample(heard.append)
    rows = collector.add_rows(
        [
            ROW,
            {**ROW, "kind": "bogus"},
            {**ROW, "remote": ""},
            {
                **ROW,
                "peer": "someone-else",
                "t": 0,
                "ice_rtt_ms": True,
                "packets_lost": "3",
                "fraction_lost": float("nan"),
                "unknown": 1,
            },
        ],
        peer="a",
    )
    assert len(rows) == 2 and heard == [rows]
    df = collector.samples
    assert list(df.columns) == SAMPLE_COLUMNS and len(df) == 2
    assert set(df["peer"]) == {"a"}  # the bound identity, not the row's claim
    assert df["bitrate_kbps"].tolist() == [250.0, 250.0] and df["jitter_ms"].dtype == "float64"
    last = df.iloc[-1]
    assert last["ice_rtt_ms"] != last["ice_rtt_ms"]  # booleans and strings are not numbers: NaN
    assert last["packets_lost"] != last["packets_lost"]
    assert str(df["t"].dtype).startswith("datetime64")


def test_add_rows_keeps_only_w3c_quality_limitation_reasons() -> None:
    collector = StatsCollector()
    rows = collector.add_rows(
        [
            {**ROW, "quality_limitation_reason": "bandwidth", "nack_count": 4},
            {**ROW, "quality_limitation_reason": "<script>"},
        ],
        peer="a",
    )
    assert [r["quality_limitation_reason"] for r in rows] == ["bandwidth", None]
    assert rows[0]["nack_count"] == 4.0


def test_add_rows_estimates_mos_of_browser_audio() -> None:
    """The browser's own RTT to that remote, its jitter buffer and the interval's loss: the
    E-model estimate the kernel's rows carry; a row's own claim is replaced."""
    base = {**ROW, "kind": "audio"}
    rows = StatsCollector().add_rows(
        [
            {**base, "direction": "outbound", "rtcp_rtt_ms": 400.0},
            {**base, "direction": "inbound", "fraction_lost": 0.1, "jitter_buffer_ms": 80},
            {**base, "remote": "other", "direction": "inbound", "fraction_lost": 0.0, "mos": 5},
        ],
        peer="a",
    )
    assert rows[1]["mos"] == pytest.approx(mos(280.0, 10.0))
    assert rows[2]["mos"] is None  # no RTT to "other" in this report
    assert rows[0]["mos"] is None


async def test_server_hands_reports_to_listeners_and_lab_to_its_frame() -> None:
    async with Lab(name="stats-reports") as lab:
        got: list[Any] = []
        lab.server.add_stats_listener(lambda user, room, rows: got.append((user, room)))
        client = await SignalingClient.connect(lab.server.url)
        other = await SignalingClient.connect(lab.server.url)
        try:
            await client.join("r", "browser")
            await other.join("r", "watcher")
            await client.send({"type": "stats", "rows": [ROW]})
            for _ in range(50):
                if got:
                    break
                await asyncio.sleep(0.02)
            assert got == [("browser", "r")]
            rows = lab.samples[lab.samples["peer"] == "browser"]
            assert rows["jitter_ms"].tolist() == [3.5]
            assert "stats" in set(lab.messages["type"])
            # the other member of the room hears nothing of it
            await client.send({"type": "leave"})
            message = await other.recv(timeout=2)
            assert message["type"] == "peer-left"
        finally:
            await client.close()
            await other.close()


async def test_page_and_assets_are_served_and_nothing_else() -> None:
    server = SignalingServer()
    from rtclab.web import ASSETS, serve_client

    serve_client(server)
    await server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"

        def get(path: str) -> tuple[int, str]:
            try:
                with urllib.request.urlopen(base + path, timeout=5) as r:
                    return r.status, r.headers["Content-Type"]
            except urllib.error.HTTPError as exc:
                return exc.code, ""

        for name, content_type in ASSETS.items():
            assert await asyncio.to_thread(get, f"/{name}") == (200, content_type)
        assert (await asyncio.to_thread(get, "/?room=r&user=u"))[0] == 200
        assert (await asyncio.to_thread(get, "/../pyproject.toml"))[0] == 404
        assert (await asyncio.to_thread(get, "/widget.js"))[0] == 404
    finally:
        await server.stop()
