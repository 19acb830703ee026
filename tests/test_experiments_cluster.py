"""Work on a Dask cluster, one LocalCluster for the module: experiments (``client=``) run
their scenarios on its workers and get the same frames a run in this loop gives; a lab's
peers run on its workers (``Lab(workers=client)``) and join through the lab's server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from rtclab import Lab
from rtclab.cc import DelayBasedEstimator, LossBasedAimd
from rtclab.experiments import RESULT_COLUMNS, Scenario, bwe_test, compare_ice_paths
from rtclab.experiments.bwe import CASES, FRAME_COLUMNS, METRIC_COLUMNS, STEP_COLUMNS
from rtclab.experiments.impairment import SUMMARY_COLUMNS, impairment_sweep
from rtclab.experiments.nat_matrix import nat_matrix
from rtclab.net import Link
from rtclab.signaling.client import SignalingClient, SignalingError
from rtclab.workers.remote import RemotePeer

pytestmark = [pytest.mark.slow, pytest.mark.turn]


def _tasks(stream: Any, name: str) -> int:
    return sum(name in str(task["key"]) for task in stream.data)


async def test_impairment_sweep_on_a_dask_cluster(dask_client: Any) -> None:
    from distributed import get_task_stream

    with get_task_stream(dask_client) as stream:
        result = await impairment_sweep(
            links=[Link(delay_ms=40), Link()], duration=1.0, width=96, height=64,
            stats_interval=0.25, client=dask_client, progress=False,
        )  # fmt: skip
    assert _tasks(stream, "run_settings") == 2  # one task per setting, on the workers
    frame = result.frame
    assert list(frame.columns) == SUMMARY_COLUMNS
    assert frame["setting"].tolist() == ["40ms", "clean"] and frame["connected"].all()
    assert frame["rtt_ms"].iloc[0] > frame["rtt_ms"].iloc[1] + 40
    assert set(result.samples["setting"]) == {"40ms", "clean"}


async def test_compare_ice_paths_on_a_dask_cluster(dask_client: Any) -> None:
    """Two repetitions -> two tasks, each with its own coturn and signaling server."""
    from distributed import get_task_stream

    scenarios = [Scenario("host", "all"), Scenario("relay/udp", "relay", ("udp",))]
    with get_task_stream(dask_client) as stream:
        result = await compare_ice_paths(
            scenarios, repetitions=2, media_seconds=0.5, width=96, height=64,
            connect_timeout=5, client=dask_client, progress=False,
        )  # fmt: skip
    assert _tasks(stream, "run_batch") == 2
    frame = result.frame
    assert list(frame.columns) == RESULT_COLUMNS and frame["connected"].all()
    assert frame["scenario"].astype(str).tolist() == ["host", "relay/udp"] * 2
    assert frame["repetition"].tolist() == [1, 1, 2, 2]
    relay = frame[frame["scenario"] == "relay/udp"]
    assert set(relay["local_candidate_type"]) == {"relay"}


async def test_matrix_on_a_dask_local_cluster(dask_client: Any) -> None:
    from distributed import get_task_stream

    with get_task_stream(dask_client) as stream:
        result = await nat_matrix(
            ["full-cone", "symmetric"],
            turn=[False, True],
            client=dask_client,
            concurrency=2,
            progress=False,
        )
    assert _tasks(stream, "run_batch") == 4  # 8 scenarios, 2 per task
    assert len(result.frame) == 8
    assert result.mismatches.empty


async def test_bwe_single_flow_case_on_dask_and_on_local_processes(dask_client: Any) -> None:
    """RFC 8867 5.1 at a fifth of its length (20 s): 1 -> 2.5 -> 0.6 -> 1 Mbps at
    0/8/12/16 s, 50 ms one way, 300 ms queue. The shipped delay-based estimator on a Dask
    worker and, at the same time, in a local process (next to the loss-based AIMD in
    another): each delay-based run brings the sender's target under the lowered capacity
    within 5 s (here within the 4 s the low capacity lasts), the frames follow the schedule,
    and Dask and the local process give the same metrics and steps, with values of the same
    size. (On a busy machine the target may already sit under 0.6 Mbps when the step comes:
    that counts as 0 s, and ``target_before_kbps`` shows it.)"""
    from distributed import get_task_stream

    with get_task_stream(dask_client) as stream:
        on_dask, local = await asyncio.gather(
            bwe_test("5.1", DelayBasedEstimator, time_scale=0.2, client=dask_client,
                     progress=False),
            bwe_test("5.1", [DelayBasedEstimator, LossBasedAimd], time_scale=0.2, workers=2,
                     progress=False),
        )  # fmt: skip
    assert _tasks(stream, "run_batch") == 1
    assert on_dask.errors == {} and local.errors == {}, (on_dask.errors, local.errors)
    case = CASES["5.1"].scaled(0.2)
    delay_based = "aiortc default (delay-based)"
    assert set(local.frame["estimator"]) == {delay_based, "loss-based AIMD"}
    for result in (on_dask, local):
        frame = result.frame
        assert list(frame.columns) == FRAME_COLUMNS
        away = frame[[all(abs(t - s) > 0.6 for s, _ in case.schedule) for t in frame["t"]]]
        assert (away["capacity_kbps"] == [case.capacity_at(t) for t in away["t"]]).all()
        assert frame["target_bitrate_kbps"].notna().mean() > 0.9
        assert frame["receive_rate_kbps"].max() > 300  # video flowed through the bottleneck
        assert list(result.steps.columns) == STEP_COLUMNS
        assert list(result.metrics.columns) == METRIC_COLUMNS
        assert result.metrics["rtt_ms_mean"].min() >= 100  # 2 x 50 ms, plus any queue
        lowered = result.steps[result.steps["lowered"] & (result.steps["estimator"] == delay_based)]
        assert lowered["to_kbps"].tolist() == [600.0]
        assert all(s is not None and s <= 5.0 for s in lowered["seconds_under"]), result.steps
    # ...and queued there (a clean link: 0). Not asked of every run: on a busy machine a
    # delay-based estimator reads the loaded loop's lateness as congestion, and CI once saw
    # the Dask run's sender stay under every capacity step (its queue delay 0 throughout)
    queues = {
        name: r.frame["queue_delay_ms"].max() for name, r in (("dask", on_dask), ("local", local))
    }
    assert max(queues.values()) > 5, queues
    assert len(local.figure.data) == 2 * (1 + 3)  # per run: capacity + 3 lines of one flow
    # the loss-based AIMD drove its sender: its first REMB is its start_bps (300 kbps), then
    # +25 kbps per 500 ms, where aiortc's encoder starts at 500 kbps
    aimd = local.frame[local.frame["estimator"] == "loss-based AIMD"]
    first = next(v for v in aimd["target_bitrate_kbps"].dropna() if v != 500.0)
    assert first in (300.0, 325.0), aimd["target_bitrate_kbps"].head(8).tolist()
    dask_metrics = on_dask.metrics
    local_metrics = local.metrics[local.metrics["estimator"] == delay_based].reset_index(drop=True)
    assert dask_metrics[["estimator", "flow"]].equals(local_metrics[["estimator", "flow"]])
    step_keys = ["t", "from_kbps", "to_kbps", "lowered"]
    local_steps = local.steps[local.steps["estimator"] == delay_based].reset_index(drop=True)
    assert on_dask.steps[step_keys].equals(local_steps[step_keys])
    for a, b in zip(dask_metrics.itertuples(), local_metrics.itertuples(), strict=True):
        assert 0.05 < a.utilization < 1.2 and 0.05 < b.utilization < 1.2, (a, b)
        assert 0.33 < a.utilization / b.utilization < 3, (a, b)


async def test_lab_peers_on_a_dask_cluster_join_through_the_lab(dask_client: Any) -> None:
    lab = Lab(workers=dask_client, stats_interval=0.5, name="dask-test", preload_widgets=False)
    try:
        await lab.start()
        assert lab.token and lab.url is not None and f"token={lab.token}" in lab.url
        with pytest.raises(SignalingError, match="unauthorized"):  # the token is on
            async with await SignalingClient.connect(lab.url.split("?")[0]) as stranger:
                await stranger.join("dask", "stranger")
        small = {"width": 160, "height": 120, "fps": 10.0}
        x = await lab.peer("x", room="dask", **small)
        y = await lab.peer("y", room="dask", **small)
        assert isinstance(x, RemotePeer) and isinstance(y, RemotePeer)
        assert {x.worker, y.worker} == {0, 1}
        assert lab.workers is not None and len({link.pid for link in lab.workers.links}) == 2
        await lab.wait_connected(timeout=20)
        for _ in range(100):
            if {"x", "y"} <= set(lab.samples.peer):
                break
            await asyncio.sleep(0.1)
        assert {"x", "y"} <= set(lab.samples.peer)
        joins = lab.messages.query("type == 'join' and direction == 'in'")
        assert len(joins) == 3  # the stranger, x and y: through the lab's own server
    finally:
        await lab.stop()
