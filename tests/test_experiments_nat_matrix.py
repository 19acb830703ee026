"""nat_matrix: the emulated matrix matches RFC 4787's predictions, here and in processes
(on Dask: test_experiments_cluster.py)."""

from __future__ import annotations

import time

import pytest

from rtclab.experiments.nat_matrix import MATRIX_COLUMNS, nat_matrix
from rtclab.net import PRESETS

pytestmark = pytest.mark.slow


async def test_full_matrix_matches_rfc4787_on_local_processes() -> None:
    began = time.monotonic()
    result = await nat_matrix(workers=2, connect_timeout=3.0, progress=False)
    elapsed = time.monotonic() - began
    frame = result.frame
    assert list(frame.columns) == MATRIX_COLUMNS
    assert len(frame) == len(PRESETS) ** 2 * 2
    assert result.mismatches.empty, result.mismatches[["a", "b", "servers", "error"]]
    stun = frame[frame["servers"] == "stun"]
    sym = stun[(stun["a"] == "symmetric") & (stun["b"] == "symmetric")]
    assert not sym["connected"].any()  # symmetric <-> symmetric needs TURN
    relayed = frame[
        (frame["servers"] == "stun+turn")
        & (frame["a"] == "symmetric")
        & (frame["b"] == "symmetric")
    ]
    assert relayed["connected"].all() and (relayed["path"] == "relay").all()
    assert frame["connected"].sum() == len(frame) - 3  # PRC<->sym both ways, sym<->sym
    ok = frame[frame["connected"]]
    assert ok["connect_ms"].notna().all() and ok["rtt_ms"].notna().all()
    failed = frame[~frame["connected"]]
    assert failed["error"].str.contains("ICE connectivity checks failed").all()
    assert elapsed < 60, f"the full matrix took {elapsed:.0f}s (failures must be fast)"
    assert result.pivot("stun").loc["symmetric", "symmetric"] == "-"
    figure = result.figure
    assert len(figure.data) == 2


async def test_matrix_in_this_loop() -> None:
    result = await nat_matrix(
        ["restricted-cone", "symmetric"], turn=[False], workers=0, progress=False
    )
    assert result.mismatches.empty
    assert result.frame["connected"].tolist() == [True, True, True, False]


async def test_matrix_with_a_firewall_on_the_offerer() -> None:
    """``udp-blocked`` on a's host with TURN over UDP only leaves no path: every such
    scenario fails, as predicted; without the firewall they connect."""
    result = await nat_matrix(["full-cone"], firewalls=[None, "udp-blocked"], workers=0,
                              progress=False)  # fmt: skip
    frame = result.frame
    assert result.mismatches.empty, frame
    blocked = frame[frame["firewall"] == "udp-blocked"]
    assert len(blocked) == 2 and not blocked["connected"].any()
    assert frame[frame["firewall"].isna()]["connected"].all()
    assert result.pivot("stun+turn", firewall="udp-blocked").loc["full-cone", "full-cone"] == "-"
    assert result.pivot("stun+turn").loc["full-cone", "full-cone"] == "direct"
    assert len(result.figure.data) == 4
    with pytest.raises(ValueError, match="udp-blocked"):
        await nat_matrix(["full-cone"], firewalls=["udp-block"], progress=False)
