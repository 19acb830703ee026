"""recovery_times: notice and recover durations from a hand-built events frame (pure)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pandas as pd

from rtclab.stats.recovery import RECOVERY_COLUMNS, recovery_times

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def frame(*rows: tuple[float, str, str | None, str]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"t": T0 + timedelta(seconds=s), "peer": p, "remote": r, "event": e, "value": None}
            for s, p, r, e in rows
        ]
    )


def test_notice_from_the_disruption_recover_from_the_return() -> None:
    events = frame(
        (0.0, "a", "b", "connected"),
        (0.1, "b", "a", "connected"),
        (10.0, "network", "b", "link-down"),
        (12.2, "a", "b", "lost"),
        (12.4, "b", "a", "lost"),
        (15.0, "network", "b", "link-up"),
        (16.5, "a", "b", "recovered"),
        (16.6, "b", "a", "recovered"),
        (30.0, "network", "b", "nat-reboot"),
        (32.0, "b", "a", "lost"),  # a kept receiving: it never noticed, nothing to recover
        (36.0, "b", "a", "recovered"),
    )
    report = recovery_times(events)
    assert list(report.columns) == RECOVERY_COLUMNS
    rows = {(r.event, r.peer): (r.notice_s, r.recover_s) for r in report.itertuples()}
    assert rows[("link-down", "a")] == (2.2, 1.5)
    assert rows[("link-down", "b")] == (2.4, 1.6)
    assert rows[("nat-reboot", "b")] == (2.0, 6.0)
    notice, recover = rows[("nat-reboot", "a")]
    assert pd.isna(notice) and pd.isna(recover)


def test_a_link_that_never_returns_and_no_events() -> None:
    events = frame(
        (0.0, "a", "b", "connected"),
        (5.0, "network", "b", "link-down"),
        (7.0, "a", "b", "lost"),
    )
    report = recovery_times(events)
    assert report["notice_s"].tolist() == [2.0] and pd.isna(report["recover_s"].iloc[0])
    assert recovery_times(events.iloc[0:0]).empty
