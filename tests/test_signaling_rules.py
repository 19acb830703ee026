"""Pure connection rules (rate limit, liveness, Origin, credentials) and the metrics text."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtclab.signaling.metrics import render_prometheus
from rtclab.signaling.rules import (
    TokenBucket,
    credential_from_request,
    liveness,
    origin_allowed,
    room_credential_ok,
    token_matches,
)

# ----------------------------------------------------------------------------- token bucket


def test_bucket_allows_burst_then_refills_at_rate() -> None:
    bucket = TokenBucket(rate=10.0, burst=5, now=100.0)
    assert [bucket.take(100.0) for _ in range(6)] == [True] * 5 + [False]
    assert not bucket.take(100.05)  # half a token
    assert bucket.take(100.11)  # one token after 0.1 s at 10/s
    assert not bucket.take(100.11)
    assert [bucket.take(200.0) for _ in range(6)] == [True] * 5 + [False]  # capped at burst


def test_bucket_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        TokenBucket(0, 5, 0.0)
    with pytest.raises(ValueError):
        TokenBucket(1, 0, 0.0)


@settings(max_examples=200, deadline=None)
@given(
    st.floats(0.5, 1000),
    st.integers(1, 50),
    st.lists(st.floats(0, 1.0, allow_nan=False), min_size=1, max_size=200),
)
def test_bucket_never_admits_more_than_burst_plus_rate_times_time(
    rate: float, burst: int, gaps: list[float]
) -> None:
    bucket = TokenBucket(rate, burst, 0.0)
    now = 0.0
    admitted = 0
    for gap in gaps:
        now += gap
        admitted += bucket.take(now)
    assert admitted <= burst + rate * now + 1e-6


# ----------------------------------------------------------------------------- liveness


def test_liveness_pings_once_per_silence_then_reaps() -> None:
    never = -math.inf
    assert liveness(10.0, 5.0, never, interval=10, timeout=5) == "ok"
    assert liveness(15.0, 5.0, never, interval=10, timeout=5) == "ping"
    assert liveness(17.0, 5.0, 15.0, interval=10, timeout=5) == "ok"  # pinged already
    assert liveness(20.0, 5.0, 15.0, interval=10, timeout=5) == "dead"
    # it answered (last_seen moved): a later silence is pinged again
    assert liveness(27.0, 16.0, 15.0, interval=10, timeout=5) == "ping"


# ----------------------------------------------------------------------------- Origin


def test_origin_allow_list() -> None:
    allowed = frozenset({"https://lab.example", None})
    assert origin_allowed("https://lab.example", allowed)
    assert origin_allowed("HTTPS://LAB.EXAMPLE", allowed)
    assert origin_allowed(None, allowed)  # non-browser clients, allowed explicitly
    assert not origin_allowed("https://evil.example", allowed)
    assert not origin_allowed("", allowed)
    assert not origin_allowed(None, frozenset({"https://lab.example"}))
    assert origin_allowed("https://anything", None)


# ----------------------------------------------------------------------------- credentials


@pytest.mark.parametrize(
    "path,auth,expected",
    [
        ("/signal", None, None),
        ("/signal?token=abc", None, "abc"),
        ("/signal?x=1&token=a%2Bb%20c", None, "a+b c"),
        ("/signal?token=", None, None),
        ("/signal?token=abc", "Bearer xyz", "xyz"),  # the header wins
        ("/signal", "bearer  xyz ", "xyz"),
        ("/signal?token=q", "Basic Zm9vOmJhcg==", "q"),  # not a bearer token: ignored
    ],
)
def test_credential_from_request(path: str, auth: str | None, expected: str | None) -> None:
    assert credential_from_request(path, auth) == expected


def test_tokens_compare_exactly() -> None:
    assert token_matches("s3cret", "s3cret")
    assert not token_matches("s3cre", "s3cret")
    assert not token_matches(None, "s3cret")
    assert token_matches("ünï", "ünï")


def test_room_tokens_override_the_server_token() -> None:
    rooms = {"vip": "v"}
    ok = room_credential_ok
    assert ok("lobby", None, server_token=None, room_tokens={})
    assert ok("lobby", "s", server_token="s", room_tokens=rooms)
    assert not ok("lobby", "v", server_token="s", room_tokens=rooms)
    assert ok("vip", "v", server_token="s", room_tokens=rooms)
    assert not ok("vip", "s", server_token="s", room_tokens=rooms)
    assert ok("lobby", None, server_token=None, room_tokens=rooms)  # only vip is closed


# ----------------------------------------------------------------------------- metrics


def test_prometheus_text() -> None:
    text = render_prometheus(
        {
            "clients": 3,
            "messages_refused_total": {"rate-limited": 2, 'we"ird\\': 1},
            "disconnects_total": {},
            "unknown_key": 7,
        }
    )
    lines = text.splitlines()
    assert "# TYPE rtclab_signaling_clients gauge" in lines
    assert "rtclab_signaling_clients 3" in lines
    assert "# TYPE rtclab_signaling_messages_refused_total counter" in lines
    assert 'rtclab_signaling_messages_refused_total{code="rate-limited"} 2' in lines
    assert 'rtclab_signaling_messages_refused_total{code="we\\"ird\\\\"} 1' in lines
    assert "unknown" not in text and text.endswith("\n")
