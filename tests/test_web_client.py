"""The served browser client in real headless Chromium against our server and aiortc peers.

Everything runs in a fresh loopback-only network namespace (``loopback_netns``): the lab's
server and aiortc peer in this process, Chromium through Playwright. Screenshots go to
``RTCLAB_SCREENSHOTS`` (default /tmp/rtclab-web).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import until

from rtclab import Lab
from rtclab.stats.convert import SAMPLE_COLUMNS
from rtclab.stats.looplag import LoopLagMonitor

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SCREENSHOTS = Path(os.environ.get("RTCLAB_SCREENSHOTS", "/tmp/rtclab-web"))

# Per remote: video frames decoded, the received width, the connection state.
INBOUND_VIDEO = """async () => {
  const out = {};
  for (const [remote, link] of window.rtclab.mesh.links) {
    const report = await link.pc.getStats();
    let frames = 0, width = 0;
    report.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') {
        frames += s.framesDecoded || 0; width = s.frameWidth || width;
      }
    });
    out[remote] = {frames, width, state: link.pc.connectionState};
  }
  return out;
}"""


async def open_page(browser: Any, url: str) -> Any:
    context = await browser.new_context(viewport={"width": 1100, "height": 900})
    page = await context.new_page()
    page.on("console", lambda m: m.type == "error" and print("browser:", m.text))
    await page.goto(url)
    return page


async def inbound(page: Any) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = await page.evaluate(INBOUND_VIDEO)
    return result


def served(url: str) -> tuple[int, str, str]:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.status, r.headers["Content-Type"], r.read().decode()


@pytest.fixture(autouse=True)
def screenshots() -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)


async def test_two_browsers_and_an_aiortc_peer_share_a_room(chromium: Any) -> None:
    async with Lab(name="web-mesh", stats_interval=0.5) as lab:
        status, kind, body = await asyncio.to_thread(served, lab.browser_url("r", "x"))
        assert status == 200 and kind.startswith("text/html") and "client.js" in body

        # a joins first; then the aiortc peer offers to it (aiortc -> browser, no trickle);
        # then b offers to both (browser -> aiortc and browser -> browser, trickled)
        a = await open_page(chromium, lab.browser_url("r", "a", screen="canvas", stats=500))
        await until(lambda: a.evaluate("window.rtclab.joined"), 10, "a joined")
        kernel = await lab.peer("kernel", room="r")
        b = await open_page(chromium, lab.browser_url("r", "b", stats=500))
        await kernel.wait_connected(count=2, timeout=15)
        assert kernel.connections["a"].role == "offerer"
        assert kernel.connections["b"].role == "answerer"
        # the browser trickles (aiortc may connect first, on a peer-reflexive candidate)
        b_link = kernel.connections["b"]
        await until(lambda: b_link.trickled_candidates > 0, 5, "b trickled candidates")

        # video everywhere: frames decoded in each browser from both others, and in aiortc
        for page, others in ((a, {"b", "kernel"}), (b, {"a", "kernel"})):
            await until(
                lambda p=page, o=others: _all_frames(p, o), 15, "frames decoded in a browser"
            )
        await until(
            lambda: all(
                kernel.connections[r].counters.frames_received.get("video", 0) > 5
                for r in ("a", "b")
            ),
            10,
            "frames received by aiortc",
        )

        # chat reaches everyone, from a browser and from aiortc
        await until(lambda: _channels_open(a, b), 10, "data channels open")
        await until(
            lambda: all(c.chat is not None and c.chat.is_open for c in kernel.connections.values()),
            10,
            "kernel channels open",
        )
        assert await a.evaluate("window.rtclab.sendChat('hello from a')") == 2
        await kernel.send_chat("hello from kernel")
        await until(
            lambda: b.evaluate(
                "['hello from a', 'hello from kernel'].every(t => "
                "window.rtclab.chat.some(m => m.text === t))"
            ),
            5,
            "chat at b",
        )
        await until(
            lambda: a.evaluate("window.rtclab.chat.some(m => m.text === 'hello from kernel')"),
            5,
            "chat at a",
        )
        await until(
            lambda: any(m.text == "hello from a" and m.sender == "a" for m in kernel.chat_log),
            5,
            "chat at kernel",
        )

        # cursors flow (unordered, no retransmits): browser -> all, aiortc -> browsers
        for i in range(5):
            await b.evaluate(f"window.rtclab.sendCursor({10 + i}, 20)")
            kernel.send_cursor(30, 40 + i)
            await asyncio.sleep(0.05)
        await until(lambda: kernel.cursor_positions.get("b") == (14.0, 20.0), 5, "cursor at kernel")
        await until(lambda: a.evaluate("window.rtclab.lastCursor.b?.[0] === 14"), 5, "cursor at a")
        await until(
            lambda: b.evaluate("window.rtclab.lastCursor.kernel?.[1] === 44"), 5, "cursor at b"
        )

        # screen share: replaceTrack to a 960x540 screen, then back to the 320x240 camera
        frame = kernel.latest_frame("a")
        assert frame is not None and frame.width == 320
        settings = await a.evaluate("window.rtclab.shareScreen()")
        assert settings["width"] == 960
        await until(lambda: _width(kernel, "a") == 960, 10, "screen resolution at kernel")
        await until(lambda: _remote_width(b, "a", lambda w: w > 320), 10, "screen resolution at b")
        await a.screenshot(path=str(SCREENSHOTS / "client-sharing.png"))
        await b.screenshot(path=str(SCREENSHOTS / "client-viewer.png"))
        await a.evaluate("window.rtclab.stopScreenShare()")
        await until(lambda: _width(kernel, "a") == 320, 10, "camera resolution again at kernel")
        await until(lambda: _remote_width(b, "a", lambda w: w == 320), 10, "camera resolution at b")

        # leaving: b leaves -> peer-left at a and kernel; the kernel leaves -> peer-left at a
        await b.evaluate("window.rtclab.leave()")
        await until(lambda: a.evaluate("window.rtclab.peerLeft.includes('b')"), 5, "left at a")
        await until(
            lambda: any(e.event == "peer-left" and e.remote == "b" for e in kernel.events),
            5,
            "left at kernel",
        )
        await kernel.leave()
        await until(
            lambda: a.evaluate("window.rtclab.peerLeft.includes('kernel')"), 5, "kernel left at a"
        )
        errors = await a.evaluate("window.rtclab.errors")
        assert errors == [], errors


async def _all_frames(page: Any, others: set[str]) -> bool:
    video = await inbound(page)
    return set(video) == others and all(v["frames"] > 5 for v in video.values())


async def _channels_open(*pages: Any) -> bool:
    script = (
        "[...window.rtclab.mesh.links.values()].every(l => "
        "l.channels.chat?.readyState === 'open' && l.channels.cursors?.readyState === 'open')"
    )
    return all([await p.evaluate(script) for p in pages])


def _width(peer: Any, remote: str) -> int | None:
    frame = peer.latest_frame(remote)
    return None if frame is None else int(frame.width)


async def _remote_width(page: Any, remote: str, ok: Callable[[int], bool]) -> bool:
    video = await inbound(page)
    return remote in video and ok(int(video[remote]["width"]))


async def test_browser_stats_rows_land_in_the_lab_frame(chromium: Any) -> None:
    async with Lab(name="web-stats", stats_interval=0.5) as lab, LoopLagMonitor() as lag:
        kernel = await lab.peer("kernel", room="s")
        page = await open_page(chromium, lab.browser_url("s", "chrome", stats=400))
        await kernel.wait_connected(count=1, timeout=15)

        def browser_rows() -> Any:
            df = lab.samples
            rows = df[(df["peer"] == "chrome") & (df["bitrate_kbps"] > 0)]
            kinds = set(zip(rows["kind"], rows["direction"], strict=True))
            wanted = {("video", "inbound"), ("video", "outbound"), ("transport", "inbound")}
            video_in = rows[(rows["kind"] == "video") & (rows["direction"] == "inbound")]
            # a few intervals past the first frame: the steady call, not its start-up
            return wanted <= kinds and len(video_in) >= 5 and (df,)

        (df,) = await until(browser_rows, 15, "browser rows with bitrates")
        assert list(df.columns) == SAMPLE_COLUMNS
        assert df["bitrate_kbps"].dtype == "float64" and str(df["t"].dtype).startswith("datetime")
        chrome = df[df["peer"] == "chrome"]
        assert set(chrome["remote"]) == {"kernel"}
        assert set(chrome["kind"]) <= {"audio", "video", "data", "transport"}
        path = chrome.dropna(subset=["local_candidate_type"]).iloc[-1]
        assert (path["local_candidate_type"], path["remote_candidate_type"]) == ("host", "host")
        assert path["protocol"] == "udp" and str(path["local_address"]).startswith("127.0.0.1:")
        video_in = chrome[(chrome["kind"] == "video") & (chrome["direction"] == "inbound")]
        measured = video_in.dropna(subset=["bitrate_kbps"])
        # The first intervals hold the call's start (the first keyframe, the decoder
        # starting: one CI run saw 2.5 fps, another 0 kbps there), and one interval on a
        # busy machine can be empty: judge the steady call by the median of its newest rows.
        steady = measured.iloc[-4:]
        # the kernel's 320x240 test pattern at 15 fps: tens to a few thousand kbps
        assert 10 < steady["bitrate_kbps"].median() < 5000, list(measured["bitrate_kbps"])
        assert 5 < steady["frames_per_second"].median() < 40, list(measured["frames_per_second"])
        assert measured["frames"].iloc[-1] > 0
        jitter = measured["jitter_ms"].dropna()
        assert len(jitter) and jitter.between(0, 200).all()  # ms, not seconds or RTP units
        assert (measured["fraction_lost"].dropna() == 0.0).all()  # loopback loses nothing
        transport = chrome[chrome["kind"] == "transport"].dropna(subset=["ice_rtt_ms"])
        # milliseconds (not seconds or microseconds): a few on loopback. Chromium's
        # currentRoundTripTime is its latest STUN check's, repeated until the next one, and
        # in the full CI suite one check late in the run took 333-456 ms (2 cores, Chromium
        # beside a long-lived test process; never seen alone). So: the best is loopback-like,
        # none is absurd; the kernel loop's own lateness is printed to tell whose delay it was.
        rtts = list(transport["ice_rtt_ms"])
        why = f"ice_rtt_ms {rtts}; kernel loop lag max {lag.max_ms:.0f} ms"
        assert rtts and 0 <= min(rtts) < 100, why
        assert max(rtts) < 2000, why
        # the kernel's own rows about the browser sit in the same frame, in the same units
        kernel_rows = df[(df["peer"] == "kernel") & (df["remote"] == "chrome")]
        assert {"video", "transport"} <= set(kernel_rows["kind"])
        # what aiortc hides, from Chromium's own counters, beside the kernel's: same names
        (df,) = await until(lambda: _hidden_rows_ready(lab.samples), 10, "hidden-stats rows")
        _hidden_columns_match(df[df["peer"] == "chrome"], df[df["peer"] == "kernel"])
        summary = await page.evaluate("document.querySelector('#diagnostics').innerText")
        assert "kernel" in summary and "host/host" in summary
        await page.screenshot(path=str(SCREENSHOTS / "client-stats.png"))


def _hidden_rows_ready(df: Any) -> Any:
    """The frame once both peers rated video each way, each sender heard an estimate
    (REMB, or Chromium's own) and each peer rated the other's audio (mos)."""
    rated = df.dropna(subset=["bitrate_kbps"])
    video = rated[rated["kind"] == "video"]
    pairs = set(zip(video["peer"], video["direction"], strict=True))
    heard = video.dropna(subset=["available_outgoing_bitrate_kbps"])
    estimated = video.dropna(subset=["estimate_kbps"])
    rated_audio = df[(df["kind"] == "audio")].dropna(subset=["mos"])
    ready = (
        len(pairs) == 4
        and set(heard["peer"]) == {"chrome", "kernel"}
        and not estimated.empty
        and set(rated_audio["peer"]) == {"chrome", "kernel"}
    )
    return (df,) if ready else None


def _hidden_columns_match(chrome: Any, kernel: Any) -> None:
    def last(rows: Any, direction: str) -> Any:
        video = rows[(rows["kind"] == "video") & (rows["direction"] == direction)]
        return video.dropna(subset=["bitrate_kbps", "nack_count"]).iloc[-1]

    for rows in (chrome, kernel):
        video_in, video_out = last(rows, "inbound"), last(rows, "outbound")
        for column in ("nack_count", "pli_count", "fir_count"):
            assert video_in[column] >= 0 and video_out[column] >= 0, column
        assert video_in["keyframes_decoded"] >= 1 and video_out["keyframes_encoded"] >= 1
        assert video_out["retransmitted_packets_sent"] >= 0
        assert 10 < video_out["target_bitrate_kbps"] < 5000
        assert 10 < video_out["available_outgoing_bitrate_kbps"] < 100_000
    chrome_in, chrome_out = last(chrome, "inbound"), last(chrome, "outbound")
    # per interval, as the kernel's frame-tag figures: none on loopback
    assert chrome_in["freeze_count"] == 0 and chrome_in["total_freezes_duration_ms"] == 0
    assert chrome_in["frames_dropped"] >= 0
    assert chrome_out["quality_limitation_reason"] in {"none", "cpu", "bandwidth", "other"}
    # the kernel's estimate of the browser's video (REMB) and its MOS of the browser's audio
    assert last(kernel, "inbound")["estimate_kbps"] > 0
    # the same E-model estimate of the audio each receives (the best interval: one slow
    # STUN check on a loaded machine can inflate a browser's RTT for a moment)
    for rows in (chrome, kernel):
        audio = rows[(rows["kind"] == "audio") & (rows["direction"] == "inbound")]
        assert audio["mos"].max() >= 4.0


async def test_summary_reads_browser_rows_like_aiortc_rows(chromium: Any) -> None:
    """Issue 17 item 15: ``lab.summary()`` must read a browser's rows as it reads an aiortc
    peer's: the same columns, filled the same way, in both directions."""
    async with Lab(name="web-summary", stats_interval=0.5) as lab:
        kernel = await lab.peer("kernel", room="s")
        await open_page(chromium, lab.browser_url("s", "chrome", stats=400))
        await kernel.wait_connected(count=1, timeout=15)
        wanted = ["send_kbps", "recv_kbps", "recv_fps", "rtcp_rtt_ms", "recv_jitter_ms"]

        def both_rows_filled() -> Any:
            summary = lab.summary().set_index("peer")
            ready = {"chrome", "kernel"} <= set(summary.index) and all(
                summary.loc[p, wanted].notna().all() for p in ("chrome", "kernel")
            )
            return ready and (summary,)

        (summary,) = await until(both_rows_filled, 15, "summary rows for the browser and kernel")
        for peer in ("chrome", "kernel"):
            row = summary.loc[peer]
            assert 10 < row["send_kbps"] < 5000 and 10 < row["recv_kbps"] < 5000, row
            assert 8 <= row["recv_fps"] <= 20, row  # each receives the other's 15 fps video
            assert 0 < row["rtcp_rtt_ms"] < 1000 and row["path"] == "host/host", row
        # what chrome sends is what kernel receives, whoever measured it
        assert summary.loc["chrome", "send_kbps"] == pytest.approx(
            summary.loc["kernel", "recv_kbps"], rel=0.5
        )
        df = lab.samples
        out = df[
            (df["peer"] == "chrome") & (df["kind"] == "video") & (df["direction"] == "outbound")
        ]
        assert out["remote_packets_lost"].notna().any()  # the remote's counts, named as such
        assert out["packets_received"].isna().all() and out["packets_lost"].isna().all()


# --------------------------------------------------------------------------- TURN (coturn)

# The page's own view of each connection's path: the selected pair's candidate types, its
# relay protocol, and the types of every local candidate gathered.
SELECTED_PATH = """async () => {
  const out = {};
  for (const [remote, link] of window.rtclab.mesh.links) {
    const report = await link.pc.getStats();
    let pair = null;
    const local = new Set();
    report.forEach((s) => {
      if (s.type === 'transport' && s.selectedCandidatePairId) {
        pair = report.get(s.selectedCandidatePairId);
      }
      if (s.type === 'local-candidate') local.add(s.candidateType);
    });
    const l = pair ? report.get(pair.localCandidateId) : null;
    const r = pair ? report.get(pair.remoteCandidateId) : null;
    out[remote] = {
      local: l && l.candidateType, remote: r && r.candidateType,
      relayProtocol: l && l.relayProtocol, url: l && l.url, address: l && l.address,
      localTypes: [...local].sort(), policy: link.pc.getConfiguration().iceTransportPolicy,
    };
  }
  return out;
}"""


def needs_coturn() -> None:
    if shutil.which("turnserver") is None:
        pytest.skip("turnserver not installed (Debian package coturn; scripts/setup.sh --test)")


async def open_logged_page(browser: Any, url: str) -> tuple[Any, list[str]]:
    """A page whose console lines (``type: text``) are kept, for asserting on them."""
    context = await browser.new_context(viewport={"width": 1100, "height": 900})
    page = await context.new_page()
    console: list[str] = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    await page.goto(url)
    return page, console


@pytest.mark.turn
@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_browser_and_aiortc_connect_relay_only_through_lab_turn(
    chromium: Any, transport: str
) -> None:
    """Both ends relay-only: the page fetches credentials with its turnToken (and uses the
    ``transport`` URL only); the aiortc peer allocates over UDP. (Not TLS: Chromium does not
    trust the throwaway CA of coturn's certificate.)"""
    needs_coturn()
    async with Lab(name="web-turn", stats_interval=0.5) as lab:
        turn = await lab.turn()
        ice = turn.ice_config(["udp"], policy="relay", connect_timeout=20)
        kernel = await lab.peer("kernel", room="t", ice=ice)
        url = lab.browser_url("t", "chrome", policy="relay", turn=transport, stats=400)
        assert f"turnToken={lab.turn_token}" in url
        assert "turn=udp%2Ctcp" in lab.browser_url("t", "other")  # no turns: by default
        page, console = await open_logged_page(chromium, url)
        await kernel.wait_connected(count=1, timeout=25)

        # the page fetched credentials with its bearer token and made relay-only connections
        fetched = await page.evaluate("window.rtclab.turn")
        assert fetched == {"ok": True, "status": 200, "error": None}
        servers = await page.evaluate("window.rtclab.iceServers")
        assert servers[0]["urls"] == [turn.url(transport)]  # type: ignore[arg-type]
        assert servers[0]["username"].endswith(":chrome")

        # video both ways: decoded in the browser, received by aiortc
        await until(lambda: _all_frames(page, {"kernel"}), 20, "frames decoded in the browser")
        await until(
            lambda: kernel.connections["chrome"].counters.frames_received.get("video", 0) > 5,
            10,
            "frames received by aiortc",
        )

        # the browser's own getStats: relay <-> relay, nothing but relay gathered
        path = (await page.evaluate(SELECTED_PATH))["kernel"]
        assert path["policy"] == "relay"
        assert (path["local"], path["remote"]) == ("relay", "relay"), path
        assert path["relayProtocol"] == transport and path["localTypes"] == ["relay"], path
        assert path["url"] == turn.url(transport), path  # type: ignore[arg-type]

        # ... and the same path in the rows the page reported to the lab
        def browser_relay_rows() -> Any:
            df = lab.samples
            rows = df[(df["peer"] == "chrome")].dropna(subset=["local_candidate_type"])
            return not rows.empty and (rows,)

        (rows,) = await until(browser_relay_rows, 10, "browser rows with a selected pair")
        last = rows.iloc[-1]
        assert (last["local_candidate_type"], last["remote_candidate_type"]) == ("relay", "relay")
        assert last["relay_protocol"] == transport
        # the aiortc side is relay too
        chosen = lab.candidates
        chosen = chosen[chosen["selected"]]
        assert set(chosen["type"]) == {"relay"}, chosen

        # coturn allocated for both: the kernel's user "lab" and the page's "chrome"
        await turn.wait_for_log(r":chrome>.*ALLOCATE processed, success", timeout=5)
        await turn.wait_for_log(r":lab>.*ALLOCATE processed, success", timeout=5)
        assert turn.allocations >= 2
        logged = lab.events.query("event == 'coturn-log'")["value"].astype(str)
        assert logged.str.contains(":chrome>").any()  # coturn's lines are in the lab's events
        errors = await page.evaluate("window.rtclab.errors")
        assert errors == [], (errors, console)
        await page.screenshot(path=str(SCREENSHOTS / "client-turn-relay.png"))


@pytest.mark.turn
async def test_refused_turn_token_is_reported_and_the_page_goes_on_without_turn(
    chromium: Any,
) -> None:
    needs_coturn()
    async with Lab(name="web-turn-401", stats_interval=0.5) as lab:
        await lab.turn()
        kernel = await lab.peer("kernel", room="u")

        # a wrong token, policy all: 401 in the status, console and errors; host path instead
        page, console = await open_logged_page(
            chromium, lab.browser_url("u", "chrome", turnToken="not-the-token")
        )
        await kernel.wait_connected(count=1, timeout=15)
        await until(lambda: _all_frames(page, {"kernel"}), 15, "frames without TURN")
        assert await page.evaluate("window.rtclab.turn") == {
            "ok": False, "status": 401,
            "error": "turn credentials: HTTP 401, the turnToken was refused",
        }  # fmt: skip
        assert await page.evaluate("window.rtclab.iceServers") == []
        status = await page.evaluate("document.querySelector('#status').textContent")
        refused = "turn credentials: HTTP 401, the turnToken was refused"
        assert status == f"room u: 1 others · no TURN: {refused}"
        assert any("HTTP 401" in line and "without TURN" in line for line in console), console
        errors = await page.evaluate("window.rtclab.errors")
        assert [e.get("status") for e in errors] == [401], errors
        path = (await page.evaluate(SELECTED_PATH))["kernel"]
        assert (path["local"], path["remote"]) == ("host", "host"), path

        # policy=relay cannot do without TURN: a refused token or none at all stops the page
        for token, expected in (
            ("not-the-token", "HTTP 401, the turnToken was refused (policy=relay cannot"),
            (None, "policy=relay needs TURN, and this page has no turnToken"),
        ):
            relay, _ = await open_logged_page(
                chromium, lab.browser_url("u", "relay-only", policy="relay", turnToken=token)
            )
            status = await until(
                lambda p=relay: p.evaluate(
                    "document.querySelector('#status').textContent.startsWith('error:')"
                    " && document.querySelector('#status').textContent"
                ),
                10,
                "an error status",
            )
            assert expected in status, status
            assert await relay.evaluate("window.rtclab.joined") is False
            await relay.context.close()


async def test_frame_latency_is_measured_both_ways_with_a_browser(chromium: Any) -> None:
    """The page's tagged canvas (video=pattern) reaches the kernel peer, which reads each
    frame's tag into lab.frames; the kernel's tagged pattern reaches the page, whose
    FrameReader puts latency_ms_p50/p95 on its inbound video rows (one clock: one machine)."""
    async with Lab(name="web-qoe", stats_interval=0.5) as lab:
        kernel = await lab.peer("kernel", room="q", audio=False)
        url = lab.browser_url("q", "chrome", stats=500, video="pattern", audio=0)
        page = await open_page(chromium, url)
        await kernel.wait_connected(count=1, timeout=15)

        def both_ways() -> Any:
            frames = lab.frames
            received = frames[(frames["peer"] == "kernel") & (frames["remote"] == "chrome")]
            received = received.dropna(subset=["latency_ms"])
            samples = lab.samples
            browser = samples[
                (samples["peer"] == "chrome")
                & (samples["kind"] == "video")
                & (samples["direction"] == "inbound")
            ].dropna(subset=["latency_ms_p50"])
            return len(received) >= 30 and len(browser) >= 3 and (received, browser)

        received, browser = await until(both_ways, 20, "frame latency both ways")
        await page.screenshot(path=str(SCREENSHOTS / "client-qoe.png"))
    # browser -> aiortc: capture on the page's clock, decoded in the kernel
    assert 0 < received["latency_ms"].median() < 300
    assert received["psnr_db"].isna().all()  # a browser canvas has no reference picture
    assert received["frame_id"].diff().dropna().ge(1).all()
    # aiortc -> browser: capture in the kernel, shown on the page
    assert 0 < browser["latency_ms_p50"].median() < 300
    assert (browser["latency_ms_p95"] >= browser["latency_ms_p50"]).all()
