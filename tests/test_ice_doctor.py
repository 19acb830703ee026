"""The TURN doctor's pure parts: URLs, causes, the verdict and its views (no network)."""

from __future__ import annotations

import pytest

from rtclab.ice.turn_doctor import Cause, DoctorReport, IceUrl, Step
from rtclab.ice.turn_doctor.causes import (
    FIXES,
    allocation_cause,
    auth_cause,
    certificate_name_matches,
    describe_seconds,
    permission_cause,
    username_expiry,
)


@pytest.mark.parametrize(
    ("url", "scheme", "host", "port", "transport"),
    [
        ("stun:stun.example.org", "stun", "stun.example.org", 3478, "udp"),
        ("turn:10.0.0.1:3479", "turn", "10.0.0.1", 3479, "udp"),
        ("turn:10.0.0.1?transport=tcp", "turn", "10.0.0.1", 3478, "tcp"),
        ("turns:turn.example.org", "turns", "turn.example.org", 5349, "tls"),
        ("turns:turn.example.org:443?transport=tcp", "turns", "turn.example.org", 443, "tls"),
        ("turn:[::1]:3478?transport=udp", "turn", "::1", 3478, "udp"),
    ],
)
def test_ice_urls_parse(url: str, scheme: str, host: str, port: int, transport: str) -> None:
    parsed = IceUrl.parse(url)
    assert (parsed.scheme, parsed.host, parsed.port, parsed.transport) == (
        scheme, host, port, transport,
    )  # fmt: skip
    assert parsed.is_turn == scheme.startswith("turn")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://example.org", "not a STUN/TURN URL"),
        ("turn:", "no host"),
        ("turn:host:abc", "not a number"),
        ("turn:host:70000", "out of range"),
        ("turn:host?transport=sctp", "udp or tcp"),
        ("turns:host?transport=udp", "runs over TLS"),
        ("turn:host?foo=1", "unknown parameter"),
    ],
)
def test_bad_ice_urls_say_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        IceUrl.parse(url)


def test_rest_username_expiry_and_auth_causes() -> None:
    assert username_expiry("1700000000:alice") == 1700000000
    assert username_expiry("alice") is None and username_expiry("x:alice") is None
    assert auth_cause(401, "1000:alice", now=2000) is Cause.CREDENTIALS_EXPIRED
    assert auth_cause(401, "3000:alice", now=2000) is Cause.WRONG_CREDENTIALS
    assert auth_cause(401, "alice", now=2000) is Cause.WRONG_CREDENTIALS
    assert auth_cause(438, "alice", now=0) is None  # once is normal: retry with the new nonce
    assert auth_cause(438, "alice", now=0, retried_stale=True) is Cause.STALE_NONCE
    assert auth_cause(486, "alice", now=0) is None
    assert allocation_cause(486) is Cause.QUOTA_REACHED
    assert allocation_cause(508) is Cause.INSUFFICIENT_CAPACITY
    assert allocation_cause(403) is Cause.ALLOCATION_FAILED
    assert permission_cause(403) is Cause.PEER_ADDRESS_DENIED
    assert permission_cause(400) is Cause.PERMISSION_FAILED
    assert set(FIXES) == set(Cause)  # every cause has a fix


def test_certificate_names_and_durations() -> None:
    assert certificate_name_matches("turn.example.org", ["turn.example.org"], [])
    assert certificate_name_matches("TURN.example.org.", ["*.example.org"], [])
    assert not certificate_name_matches("a.b.example.org", ["*.example.org"], [])
    assert not certificate_name_matches("127.0.0.1", ["127.0.0.1"], [])  # IPs only as IPs
    assert certificate_name_matches("127.0.0.1", [], ["127.0.0.1"])
    assert certificate_name_matches("::1", [], ["0:0:0:0:0:0:0:1"])
    assert describe_seconds(86399) == "23 h 59 min"
    assert describe_seconds(-250) == "4 min 10 s"
    assert describe_seconds(2 * 86400 + 7200) == "2 d 2 h"


def _report() -> DoctorReport:
    dead, live, stun = "turn:a:1", "turn:b:2", "stun:b:2"
    steps = [
        Step("resolve", dead, "udp", True, 0.1, "a → 10.0.0.1"),
        Step.failed("reach", dead, "udp", 5000.0, Cause.UNREACHABLE, "no answer"),
        *(Step(name, live, "udp", True, 1.0, "fine") for name in ("reach", "auth", "relay")),
        Step("credentials", live, "udp", True, 0.0, "expires in 5 min", fix="mint soon"),
        Step("binding", stun, "udp", True, 1.0, "server-reflexive address 1.2.3.4:5"),
    ]
    return DoctorReport(steps, [dead, live, stun], {dead: "turn", live: "turn", stun: "stun"})


def test_verdict_names_what_works_and_why_the_rest_does_not() -> None:
    report = _report()
    assert report.working == ["turn:b:2", "stun:b:2"] and not report.ok
    assert report.cause("turn:a:1") is Cause.UNREACHABLE and report.cause("turn:b:2") is None
    assert report.verdict == "2 of 3 work (turn:b:2, stun:b:2) — turn:a:1: unreachable"
    frame = report.frame
    assert frame["cause"].tolist().count("unreachable") == 1
    assert frame.loc[1, "fix"] == FIXES[Cause.UNREACHABLE]
    assert [s.status for s in report.steps[-2:]] == ["warn", "ok"]
    table = report.table()
    assert "XX reach" in table and "!! credentials" in table and "cause: unreachable" in table
    assert table.splitlines()[-1] == f"verdict: {report.verdict}"
    html = report._repr_html_()
    assert html.count("rtclab-doctor-fail") == 1 and html.count("rtclab-doctor-warn") == 1
    assert "#ffd6d2" in html and "a → 10.0.0.1" in html


def test_a_turn_url_without_its_relay_step_does_not_count_as_working() -> None:
    url = "turn:a:1"
    report = DoctorReport([Step("reach", url, "udp", True, 1.0, "ok")], [url], {url: "turn"})
    assert report.working == [] and "incomplete" in report.verdict
    escaped = DoctorReport(
        [Step("binding", "stun:<b>", "udp", True, 1.0, "<script>")], ["stun:<b>"], {}
    )
    assert "<script>" not in escaped._repr_html_()
