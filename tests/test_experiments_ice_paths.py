"""compare_ice_paths against real coturn, and notebook 05 run top to bottom (nbclient)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from rtclab.experiments import DEFAULT_SCENARIOS, RESULT_COLUMNS, Scenario, compare_ice_paths
from rtclab.ice.coturn import Coturn

pytestmark = pytest.mark.turn

NOTEBOOK = Path(__file__).parent.parent / "notebooks" / "05-turn-and-ice-paths.ipynb"


def test_default_scenarios_cover_the_issue() -> None:
    policies = {s.policy for s in DEFAULT_SCENARIOS}
    transports = {t for s in DEFAULT_SCENARIOS for t in s.turn}
    assert policies == {"all", "relay"} and transports == {"udp", "tcp", "tls"}
    assert {s.stun for s in DEFAULT_SCENARIOS} == {True, False}


async def test_compare_ice_paths_rows_figure_and_csv(coturn: Coturn, tmp_path: Path) -> None:
    scenarios = [
        Scenario("host", "all"),
        Scenario("relay/udp", "relay", ("udp",)),
        Scenario("relay, no TURN", "relay"),  # fails by design, with a named reason
    ]
    seen: list[dict[str, object]] = []
    result = await compare_ice_paths(
        scenarios, repetitions=2, media_seconds=1.0, coturn=coturn, progress=False,
        csv=tmp_path / "runs.csv", on_run=seen.append, connect_timeout=4,
    )  # fmt: skip
    frame = result.frame
    assert list(frame.columns) == RESULT_COLUMNS and len(frame) == 6 == len(seen)
    ok = frame[frame["connected"]]
    assert set(ok["scenario"].astype(str)) == {"host", "relay/udp"}
    relay = ok[ok["scenario"] == "relay/udp"]
    assert set(relay["local_candidate_type"]) == set(relay["remote_candidate_type"]) == {"relay"}
    assert set(relay["relay_protocol"]) == {"udp"}
    assert (ok["connect_ms"] > 0).all() and (ok["connect_ms"] < 4000).all()
    assert ok["bitrate_kbps"].gt(0).all()
    failed = frame[~frame["connected"]]
    assert set(failed["scenario"].astype(str)) == {"relay, no TURN"}
    assert failed["error"].str.contains("needs a TURN server").all()
    summary = result.summary()
    assert list(summary["connected_pct"]) == [100.0, 100.0, 0.0]
    assert summary.loc[1, "path"] == "relay/relay udp via udp"
    back = pd.read_csv(tmp_path / "runs.csv")
    assert list(back.columns) == RESULT_COLUMNS and len(back) == 6
    frame_again, figure = result
    assert frame_again is frame
    assert len(figure.data) >= 3 and "ICE paths" in figure.layout.title.text
