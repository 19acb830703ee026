"""bwe_test on real aiortc peers through the emulated bottleneck: the single-flow case
(RFC 8867 5.1) on a local process and on a Dask cluster."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from rtclab.cc import DelayBasedEstimator
from rtclab.experiments import bwe_test
from rtclab.experiments.bwe import CASES, FRAME_COLUMNS, METRIC_COLUMNS, STEP_COLUMNS

pytestmark = pytest.mark.slow


async def test_single_flow_case_on_dask_and_on_a_local_process() -> None:
    """RFC 8867 5.1 at a fifth of its length (20 s): 1 -> 2.5 -> 0.6 -> 1 Mbps at
    0/8/12/16 s, 50 ms one way, 300 ms queue, the shipped delay-based estimator, run at
    the same time on a Dask worker and in a local process. Each brings the sender's target
    under the lowered capacity within 5 s (here within the 4 s the low capacity lasts),
    the frames follow the schedule, and both give the same metrics and steps, with values
    of the same size. (On a busy machine the target may already sit under 0.6 Mbps when
    the step comes: that counts as 0 s, and ``target_before_kbps`` shows it.)"""
    distributed = pytest.importorskip("distributed")
    options: dict[str, Any] = {"time_scale": 0.2, "progress": False}
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        on_dask, local = await asyncio.gather(
            bwe_test("5.1", DelayBasedEstimator, client=client, **options),
            bwe_test("5.1", DelayBasedEstimator, workers=1, **options),
        )
    case = CASES["5.1"].scaled(0.2)
    for result in (on_dask, local):
        assert result.errors == {}
        frame = result.frame
        assert list(frame.columns) == FRAME_COLUMNS
        away = frame[[all(abs(t - s) > 0.6 for s, _ in case.schedule) for t in frame["t"]]]
        assert (away["capacity_kbps"] == [case.capacity_at(t) for t in away["t"]]).all()
        assert frame["target_bitrate_kbps"].notna().mean() > 0.9
        assert frame["receive_rate_kbps"].max() > 300  # video flowed through the bottleneck
        steps = result.steps
        assert list(steps.columns) == STEP_COLUMNS
        lowered = steps[steps["lowered"]]
        assert lowered["to_kbps"].tolist() == [600.0]
        assert all(s is not None and s <= 5.0 for s in lowered["seconds_under"]), steps
        assert list(result.metrics.columns) == METRIC_COLUMNS
        assert result.metrics["rtt_ms_mean"].min() >= 100  # 2 x 50 ms, plus any queue
        assert len(result.figure.data) == 1 + 3  # capacity + 3 lines of one flow
    keys = ["estimator", "flow"]
    assert on_dask.metrics[keys].equals(local.metrics[keys])
    step_keys = ["estimator", "t", "from_kbps", "to_kbps", "lowered"]
    assert on_dask.steps[step_keys].equals(local.steps[step_keys])
    for a, b in zip(on_dask.metrics.itertuples(), local.metrics.itertuples(), strict=True):
        assert 0.05 < a.utilization < 1.2 and 0.05 < b.utilization < 1.2, (a, b)
        assert 0.33 < a.utilization / b.utilization < 3, (a, b)
