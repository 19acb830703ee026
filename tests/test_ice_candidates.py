"""Candidate frames: every candidate of a real loopback pair, and the selected pair over time."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pandas as pd

from rtclab.ice.inspect import CANDIDATE_COLUMNS, PAIR_COLUMNS, selected_pairs_frame
from rtclab.peer import Peer


async def test_peer_candidates_frame_on_loopback(make_peer: Callable[..., Awaitable[Peer]]) -> None:
    a = await make_peer("a", video=False, audio=False)
    b = await make_peer("b", video=False, audio=False)
    await b.wait_connected(count=1)
    await a.wait_connected(count=1)
    frame = b.candidates()
    assert list(frame.columns) == CANDIDATE_COLUMNS
    assert set(frame["side"]) == {"local", "remote"}
    assert set(frame["type"]) == {"host"} and set(frame["address"]) == {"127.0.0.1"}
    assert frame["priority"].gt(0).all() and frame["foundation"].str.len().gt(0).all()
    assert frame["t_ms"].notna().all()  # local: gathering time; remote: arrival time
    assert frame["selected"].sum() == 2  # one local, one remote
    gathered = [e for e in b.events if e.event == "ice-candidate-gathered"]
    assert gathered and "host udp 127.0.0.1:" in str(gathered[0].value)


def test_selected_pairs_frame_keeps_changes_only() -> None:
    t = pd.to_datetime([0, 1, 2, 3], unit="s", utc=True)
    path = {"protocol": "udp", "local_address": "127.0.0.1:1", "remote_address": "127.0.0.1:2"}
    samples = pd.DataFrame(
        [
            {"t": t[0], "elapsed_s": 0.0, "peer": "a", "remote": "b", "kind": "video",
             "local_candidate_type": "relay", "remote_candidate_type": "relay",
             "relay_protocol": "udp", **path},
            {"t": t[0], "elapsed_s": 0.0, "peer": "a", "remote": "b", "kind": "audio",
             "local_candidate_type": "relay", "remote_candidate_type": "relay",
             "relay_protocol": "udp", **path},
            {"t": t[1], "elapsed_s": 1.0, "peer": "a", "remote": "b", "kind": "video",
             "local_candidate_type": "relay", "remote_candidate_type": "relay",
             "relay_protocol": "udp", **path},
            {"t": t[2], "elapsed_s": 2.0, "peer": "a", "remote": "b", "kind": "video",
             "local_candidate_type": "host", "remote_candidate_type": "host",
             "relay_protocol": None, **path},
        ]
    )  # fmt: skip
    changes = selected_pairs_frame(samples)
    assert list(changes.columns) == PAIR_COLUMNS
    assert list(changes["local_candidate_type"]) == ["relay", "host"]
    assert len(selected_pairs_frame(samples, changes_only=False)) == 3  # one per sample time
    assert selected_pairs_frame(pd.DataFrame()).empty
