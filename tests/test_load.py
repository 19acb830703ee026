"""Load tests: the pure plan/summary/metrics logic, one real run over two worker
processes, the CLI's bad input and its workers dying with it."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rtclab.cli import main
from rtclab.experiments.load import (
    LOAD_COLUMNS,
    load_test,
    metrics_url,
    parse_prometheus,
    plan_peers,
    summarize_load,
)
from rtclab.signaling.metrics import render_prometheus
from rtclab.signaling.server import SignalingServer

WORKER = "rtclab.experiments._load_worker"


def test_plan_fills_rooms_round_robin_across_workers() -> None:
    plan = plan_peers(7, 3, 2, run="t")
    assert [p["room"] for p in plan] == ["t-r0", "t-r1", "t-r2", "t-r0", "t-r1", "t-r2", "t-r0"]
    assert [p["worker"] for p in plan] == [0, 1, 0, 1, 0, 1, 0]
    assert plan[0]["remotes"] == ["t-p3", "t-p6"] and plan[1]["remotes"] == ["t-p4"]
    with pytest.raises(ValueError, match="3 rooms need at least 6 peers"):
        plan_peers(5, 3, 1)
    with pytest.raises(ValueError, match="at least one room"):
        plan_peers(4, 0, 1)


def test_summary_percentiles_and_missing_values() -> None:
    frame = pd.DataFrame({"connected_ms": np.arange(1.0, 101.0), "first_frame_ms": np.nan})
    summary = summarize_load(frame)
    row = summary.loc["connected_ms"]
    assert row["count"] == 100 and row["max"] == 100.0
    assert (row["p50"], row["p90"], row["p99"]) == pytest.approx((50.5, 90.1, 99.01))
    assert summary.loc["first_frame_ms", "count"] == 0
    assert np.isnan(summary.loc["first_frame_ms", "p50"])
    assert summary.loc["join_ms", "count"] == 0  # a column the frame lacks


def test_prometheus_text_round_trips_and_metrics_url() -> None:
    text = render_prometheus({"clients": 3, "disconnects_total": {"rate-limited": 2}})
    assert parse_prometheus(text + "garbage\n") == {
        "rtclab_signaling_clients": 3.0,
        'rtclab_signaling_disconnects_total{reason="rate-limited"}': 2.0,
    }
    assert metrics_url("ws://h:1/signal?token=s3&x=1") == "http://h:1/metrics?token=s3"
    assert metrics_url("wss://h/signal") == "https://h/metrics"
    with pytest.raises(ValueError, match="ws:// or wss://"):
        metrics_url("http://h/signal")


def _workers_of(parent: int) -> list[int]:
    """Pids of load workers started by ``parent`` (their argument is its pid)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if WORKER.encode() in args and str(parent).encode() in args:
            found.append(int(entry.name))
    return found


@pytest.mark.slow
async def test_six_peers_in_two_rooms_on_two_workers(server: SignalingServer) -> None:
    result = await load_test(6, 2, 2, url=server.url, duration=0.5, width=96, height=64,
                             progress=False)  # fmt: skip
    frame = result.frame
    assert list(frame.columns) == LOAD_COLUMNS and len(frame) == 6
    assert frame["connected"].all() and frame["first_frame"].all(), frame["error"]
    assert set(frame["worker"]) == {0, 1} and frame["room"].nunique() == 2
    assert (frame["first_frame_ms"] >= frame["connected_ms"]).all()
    assert (frame["frames_per_second"] > 0).all() and result.failures.empty
    assert result.summary.loc["first_frame_ms", "count"] == 6
    metrics = result.metrics
    assert metrics.loc["rtclab_signaling_connections_total", "change"] == 6
    assert metrics.loc["rtclab_signaling_clients", "during"] == 6
    assert metrics.loc["rtclab_signaling_rooms", "during"] == 2
    assert server.metrics()["clients"] == 0  # everyone left
    assert _workers_of(os.getpid()) == []
    assert "6 connected, 0 failed" in result.report()
    assert len(result.figure.data) == 2  # join -> connected and -> first frame, per peer


@pytest.mark.slow
async def test_failures_are_rows_with_reasons() -> None:
    """A server that admits 3 per room: the 4th peer is refused, the other three never see
    it and time out; nothing raises."""
    async with SignalingServer(port=0, max_room_size=3) as small:
        result = await load_test(4, 1, 1, url=small.url, video=False, duration=0,
                                 connect_timeout=1.5, progress=False)  # fmt: skip
    assert result.failures.to_dict() == {"connect-timeout": 3, "join-refused:room-full": 1}
    refused = result.frame[result.frame["failure"] == "join-refused:room-full"]
    assert not refused["connected"].any() and refused["join_ms"].isna().all()
    assert "failures:" in result.report() and "connect-timeout: 3" in result.report()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--peers", "3", "--rooms", "2"], "2 rooms need at least 4 peers"),
        (["--workers", "0"], "must be at least 1"),
        (["--url", "http://127.0.0.1:1/signal"], "ws:// or wss://"),
        (["--url", "ws://127.0.0.1:1/signal"], "cannot reach the signaling server"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(
    args: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["load", *args, "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rtclab load: ") and says in err and err.count("\n") == 1


async def _until(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if check() or time.monotonic() > deadline:
            return check()
        await asyncio.sleep(0.1)


@pytest.mark.slow
async def test_workers_die_with_a_killed_command() -> None:
    """``kill -9`` of ``rtclab load`` while its workers start leaves none behind."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rtclab", "load", "--peers", "4", "--rooms", "2",
        "--workers", "2", "--duration", "60", "-q",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert await _until(lambda: len(_workers_of(proc.pid)) == 2, 30)
        await asyncio.sleep(0.5)
    finally:
        proc.kill()
        await proc.wait()
    assert await _until(lambda: not _workers_of(proc.pid), 5)
