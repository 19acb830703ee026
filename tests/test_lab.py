"""Lab: the notebook facade — start/stop in one loop, re-run safety, message log, frames."""

from __future__ import annotations

import asyncio
import gc
import socket
from pathlib import Path

import pytest

from rtclab import Lab, Peer, read_events_csv, read_samples_csv
from rtclab.signaling.message_log import _summarize
from rtclab.stats import read_samples_parquet

pytestmark = pytest.mark.slow


def _port_free(port: int) -> bool:
    """Nothing listens there any more, and a new server could bind it (as servers do)."""
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", port)) == 0:
            return False
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


async def test_lab_peers_messages_and_clean_stop() -> None:
    lab = Lab(stats_interval=0.5)
    await lab.start()
    port = lab.server.port
    try:
        alice = await lab.peer("alice", room="r", video=False, audio=False)
        await lab.peer("bob", room="r", video=False, audio=False)
        await lab.wait_connected(timeout=10)
        await asyncio.sleep(1.2)
        messages = lab.messages
        kinds = set(messages["type"])
        assert {"join", "room-joined", "peer-joined", "offer", "answer"} <= kinds
        offer = messages[(messages["type"] == "offer") & (messages["direction"] == "out")].iloc[0]
        assert offer["from"] == "bob" and offer["to"] == "alice"
        assert "candidates" in offer["summary"]
        assert not lab.samples.empty and set(lab.samples["kind"]) >= {"data", "transport"}
        assert (lab.events["event"] == "connected").sum() == 2
        assert alice.connections["bob"].state == "connected"
        with pytest.raises(ValueError, match="already exists"):
            await lab.peer("alice")
    finally:
        await lab.stop()
    assert _port_free(port)
    assert lab.peers == {}
    assert not lab.collector.running


async def test_rerunning_the_cell_stops_the_previous_lab() -> None:
    first = Lab()
    await first.start()
    await first.peer("alice", video=False, audio=False)
    port = first.server.port
    second = Lab()  # same default name: as when a notebook cell runs again
    with pytest.warns(RuntimeWarning, match=r"stopped the running Lab 'default'.*name="):
        await second.start()
    try:
        assert first.url is None and first.peers == {}
        assert _port_free(port)
        await second.peer("alice", video=False, audio=False)  # the name is free again
    finally:
        await second.stop()


async def test_peer_before_start_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match=r"lab\.start"):
        await Lab().peer("alice")


def test_summaries() -> None:
    sdp = {
        "type": "offer",
        "sdp": "v=0\r\nm=audio 9\r\na=candidate:1 1 udp 1 127.0.0.1 5 typ host\r\n",
    }
    assert "m=audio" in _summarize({"type": "offer", "sdp": sdp})
    assert "1 candidates" in _summarize({"type": "offer", "sdp": sdp})
    cand = {"candidate": "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host", "sdpMid": "0"}
    assert _summarize({"type": "ice-candidate", "candidate": cand}) == "127.0.0.1 5000 typ host"
    assert _summarize({"type": "ice-candidate", "candidate": None}) == "end-of-candidates"
    assert _summarize({"type": "error", "code": "not-joined", "message": "x"}) == "not-joined: x"


async def test_driving_the_lab_without_await_queues_steps_in_order() -> None:
    """Cells without ``await``: each call returns at once, steps run in order in the loop,
    a failed step is reported (errors, events) and the rest keep working."""
    lab = Lab(stats_interval=0.5, name="no-await")
    assert lab.launch() is lab
    alice = lab.add_peer("alice", room="r", video=False, audio=False)
    bob = lab.add_peer("bob", room="r", video=False, audio=False)
    assert lab.url is None and alice.state != "joined"  # nothing ran yet: no blocking
    carol = Peer("carol", "ws://127.0.0.1:9/signal", room="r")  # a step that must fail
    lab._soon("join-carol", carol.join, instead="await carol.join()")
    with pytest.raises(ValueError, match="already exists"):
        lab.add_peer("alice")
    await lab.settled()
    try:
        assert lab.url is not None
        assert alice.state == "joined" and bob.state == "joined"
        await lab.wait_connected(timeout=10)
        assert len(lab.errors) == 1 and "join-carol failed" in lab.errors[0]
        assert "cannot reach the signaling server" in lab.errors[0]
        events = lab.events
        assert (events[events["event"] == "error"]["peer"] == "lab").all()
        assert (events["event"] == "error").sum() == 1
    finally:
        lab.stop_soon()
        await lab.settled()
    assert lab.url is None and not lab.peers


def test_without_a_running_loop_the_error_says_what_to_do() -> None:
    lab = Lab(name="no-loop")
    with pytest.raises(RuntimeError, match=r"needs a running event loop.*`await lab\.start\(\)`"):
        lab.launch()
    with pytest.raises(RuntimeError, match=r"lab\.add_peer\('x'\) needs.*`await lab\.peer\('x'"):
        lab.add_peer("x")
    assert lab.peers == {}  # nothing half-made


async def test_a_failed_add_peer_leaves_nothing_behind() -> None:
    lab = Lab(name="retry")
    alice = lab.add_peer("alice", room="r", video=False, audio=False)  # lab not started
    await lab.settled()
    assert alice.state == "new"
    assert lab.errors == ["add_peer('alice') failed: RuntimeError: the lab is not started, "
                          "so 'alice' cannot join"]  # fmt: skip
    assert lab.peers == {} and lab.collector._sources == []
    lab.launch()
    again = lab.add_peer("alice", room="r", video=False, audio=False)  # the retry works
    await lab.settled()
    try:
        assert again.state == "joined" and lab.peers == {"alice": again}
    finally:
        await lab.stop()


_DASHBOARD_MID_EXPERIMENT = """
import asyncio, json, sys
from rtclab import Lab
from rtclab.stats.looplag import LoopLagMonitor

async def main(preload):
    lab = Lab(stats_interval=0.5, preload_widgets=preload)
    await lab.start()
    imported = "plotly.basewidget" in sys.modules
    try:
        await lab.peer("alice", room="r", width=160, height=120)
        await lab.peer("bob", room="r", width=160, height=120)
        await lab.wait_connected(timeout=10)
        async with LoopLagMonitor() as lag:
            await asyncio.sleep(0.2)
            lab.dashboard()  # as a notebook cell would, while media runs
            await asyncio.sleep(0.2)
    finally:
        await lab.stop()
    print(json.dumps({"imported_at_start": imported, "lag_max_ms": lag.max_ms}))

asyncio.run(main(sys.argv[1] == "1"))
"""


async def _dashboard_mid_experiment(preload: bool) -> dict[str, float]:
    import json
    import sys

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _DASHBOARD_MID_EXPERIMENT,
        "1" if preload else "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()[-2000:]
    result: dict[str, float] = json.loads(out.decode().splitlines()[-1])
    return result


async def test_preloaded_widgets_keep_media_running_when_a_dashboard_opens() -> None:
    # a fresh interpreter each: this test process has long imported plotly
    preloaded = await _dashboard_mid_experiment(True)
    assert preloaded["imported_at_start"]
    assert preloaded["lag_max_ms"] < 600, preloaded  # not frozen by seconds of imports
    cold = await _dashboard_mid_experiment(False)  # outside a kernel the default is off
    assert not cold["imported_at_start"]
    assert cold["lag_max_ms"] > preloaded["lag_max_ms"], (cold, preloaded)


async def test_rows_older_than_the_window_spill_and_nothing_is_lost(tmp_path: Path) -> None:
    """Issue 17 item 2, the reported run: ``Lab(stats_interval=0.5, stats_window=3)`` for
    6 s kept rows from 3.5 s on only, in memory and in the CSV."""
    lab = Lab(name="spill", stats_interval=0.5, stats_window=3)
    spill_dir = lab.spill_dir
    async with lab:
        await lab.peer("alice", room="r", video=False, audio=False)
        await lab.peer("bob", room="r", video=False, audio=False)
        await lab.wait_connected(timeout=10)
        await asyncio.sleep(6.5)
        kept = lab.collector.rows_within(3600)
        assert kept[-1]["elapsed_s"] - kept[0]["elapsed_s"] <= 3.0  # memory stays bounded
        assert (spill_dir / "samples.csv").exists()
    samples = lab.samples  # after stop too: the spill outlives stop()
    first = samples.groupby("peer")["elapsed_s"].min()
    assert (first < 1.5).all() and samples["elapsed_s"].max() > 6.0, first
    paths = lab.to_csv(tmp_path / "csv")
    assert len(read_samples_csv(paths["samples"])) == len(samples)
    assert (read_events_csv(paths["events"])["event"] == "connected").sum() == 2
    assert len(read_samples_parquet(lab.to_parquet(tmp_path / "pq")["samples"])) == len(samples)
    del lab, samples
    gc.collect()
    assert not spill_dir.exists()  # the lab's own temporary folder goes with it


async def test_a_spill_dir_the_user_names_is_kept(tmp_path: Path) -> None:
    async with Lab(name="spill-kept", stats_interval=0.2, stats_window=0.5,
                   spill_dir=tmp_path / "keep") as lab:  # fmt: skip
        await lab.peer("alice", room="r", video=False, audio=False)
        await lab.peer("bob", room="r", video=False, audio=False)
        await lab.wait_connected(timeout=10)
        await asyncio.sleep(1.5)
    del lab
    gc.collect()
    assert len(read_samples_csv(tmp_path / "keep" / "samples.csv")) > 0
