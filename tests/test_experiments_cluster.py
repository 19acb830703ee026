"""Experiments on a Dask cluster (``client=``): the scenarios run on its workers and come
back as the same frames a run in this loop gives."""

from __future__ import annotations

from typing import Any

import pytest

from rtclab.experiments import RESULT_COLUMNS, Scenario, compare_ice_paths
from rtclab.experiments.impairment import SUMMARY_COLUMNS, impairment_sweep
from rtclab.experiments.nat_matrix import nat_matrix
from rtclab.net import Link

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
