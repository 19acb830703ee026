"""How long peers took to notice a network event and to recover from it — from the events
frame alone (pure: a frame in, a frame out).

A *disruption* is a ``network`` event that peers should notice: ``link-down``,
``nat-reboot``, ``address-change`` (see :mod:`rtclab.net.events`). For each one and each
connection (peer, remote) that had connected before it: ``notice_s`` is the time from the
disruption to the peer's first ``lost`` event, and ``recover_s`` the time from the network's
return (the matching ``link-up``; the disruption itself for the others) to the first
``recovered`` after that ``lost`` — both before the next disruption. ``None`` where the
peer never noticed (traffic went on) or did not recover in that window.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = ["RECOVERY_COLUMNS", "recovery_times"]

RECOVERY_COLUMNS = [
    "t",
    "event",
    "target",
    "back_t",
    "peer",
    "remote",
    "notice_s",
    "recover_s",
]

_DISRUPTIONS = ("link-down", "nat-reboot", "address-change")


def recovery_times(events: pd.DataFrame) -> pd.DataFrame:
    """One row per disruption and connection: ``notice_s`` and ``recover_s`` (see module)."""
    if events.empty:
        return _frame([])
    frame = events.sort_values("t", kind="stable")
    network = frame[frame["peer"] == "network"]
    peers = frame[frame["peer"] != "network"]
    disruptions = network[network["event"].isin(_DISRUPTIONS)]
    rows: list[dict[str, Any]] = []
    starts = list(disruptions["t"])
    for index, (_, event) in enumerate(disruptions.iterrows()):
        t0 = event["t"]
        end = starts[index + 1] if index + 1 < len(starts) else None
        back = t0
        if event["event"] == "link-down":
            ups = network[
                (network["event"] == "link-up")
                & (network["remote"] == event["remote"])
                & (network["t"] >= t0)
            ]
            back = ups["t"].iloc[0] if not ups.empty else None
        before = peers[(peers["t"] < t0) & (peers["event"] == "connected")]
        window = peers[(peers["t"] >= t0) & ((peers["t"] < end) if end is not None else True)]
        pairs = set(zip(before["peer"], before["remote"], strict=True))
        for peer, remote in sorted(pairs):
            mine = window[(window["peer"] == peer) & (window["remote"] == remote)]
            lost = mine[mine["event"] == "lost"]
            notice = recover = None
            if not lost.empty:
                lost_t = lost["t"].iloc[0]
                notice = (lost_t - t0).total_seconds()
                if back is not None:
                    after = mine[(mine["event"] == "recovered") & (mine["t"] >= lost_t)]
                    if not after.empty:
                        recover = max((after["t"].iloc[0] - back).total_seconds(), 0.0)
            rows.append(
                {
                    "t": t0,
                    "event": event["event"],
                    "target": event["remote"],
                    "back_t": back,
                    "peer": peer,
                    "remote": remote,
                    "notice_s": notice,
                    "recover_s": recover,
                }
            )
    return _frame(rows)


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame: pd.DataFrame = pd.DataFrame(rows, columns=RECOVERY_COLUMNS)
    return frame
