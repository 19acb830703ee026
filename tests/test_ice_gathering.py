"""rtclab.ice.gathering and IceConfig without a network: URL parsing, error naming, timing."""

from __future__ import annotations

import ssl
from types import SimpleNamespace

import pytest
from aioice import stun

from rtclab.ice.config import IceConfig, IceServer
from rtclab.ice.gathering import (
    GatheringLog,
    candidate_key,
    describe_turn_error,
    parse_server_url,
)


def test_parse_server_url_follows_aiortc() -> None:
    udp = parse_server_url("turn:127.0.0.1:3478", "u", "c")
    assert (udp.scheme, udp.port, udp.transport, udp.relay_protocol) == ("turn", 3478, "udp", "udp")
    tls = parse_server_url("turns:example.org?transport=tcp")
    assert (tls.port, tls.relay_protocol, tls.supported) == (5349, "tls", True)
    assert not parse_server_url("turns:example.org:5349?transport=udp").supported  # DTLS
    stun_url = parse_server_url("stun:127.0.0.1:3478")
    assert not stun_url.is_turn and stun_url.supported
    assert "c" not in repr(parse_server_url("turn:h:1", "user", "c-secret-ish")).split("url=")[0]


def _failed(code: int, reason: str) -> stun.TransactionFailed:
    response = stun.Message(stun.Method.ALLOCATE, stun.Class.ERROR)
    response.attributes["ERROR-CODE"] = (code, reason)
    return stun.TransactionFailed(response)


@pytest.mark.parametrize(
    ("exc", "kind", "words"),
    [
        (_failed(401, "Unauthorized"), "turn-unauthorized",
         "TURN 401 unauthorized (wrong secret or expired credential)"),
        (_failed(403, "Forbidden IP"), "turn-forbidden", "TURN 403 forbidden"),
        (_failed(486, "Allocation Quota Reached"), "turn-error", "486"),
        (stun.TransactionTimeout(), "turn-unreachable", "no answer from"),
        (ConnectionRefusedError(111, "Connection refused"), "turn-unreachable", "refused"),
        (ssl.SSLCertVerificationError("bad"), "turn-tls", "not trusted"),
        (RuntimeError("odd"), "turn-error", "RuntimeError: odd"),
    ],
)  # fmt: skip
def test_turn_errors_are_named(exc: BaseException, kind: str, words: str) -> None:
    server = parse_server_url("turn:127.0.0.1:3478?transport=udp")
    got_kind, message = describe_turn_error(exc, server, 2.0)
    assert got_kind == kind and words in message
    assert server.url in message


def test_gathering_log_times_and_events() -> None:
    events: list[tuple[str, object]] = []
    log = GatheringLog(lambda event, value: events.append((event, value)))
    log.begin()
    host = SimpleNamespace(type="host", transport="udp", host="127.0.0.1", port=5000)
    relay = SimpleNamespace(type="relay", transport="udp", host="127.0.0.1", port=6000)
    server = parse_server_url("turn:127.0.0.1:3478?transport=tcp")
    log._mark_host_bound()
    log._server_candidate(relay, server.url, server.relay_protocol)
    log.end([host, relay])
    assert log.turn_url == server.url and log.relay_protocols[candidate_key(relay)] == "tcp"
    assert 0 <= log.local_times[candidate_key(host)] <= log.local_times[candidate_key(relay)]
    assert [e for e, _ in events] == [
        "turn-allocated",
        "ice-candidate-gathered",
        "ice-candidate-gathered",
    ]
    log.fail("turn-unauthorized", server.url, "TURN 401 ...")
    log.fail("turn-unauthorized", server.url, "TURN 401 ...")  # once per kind and URL
    assert len(log.failures) == 1 and events[-1] == ("turn-failed", "TURN 401 ...")
    remote = SimpleNamespace(transport="udp", host="127.0.0.1", port=7000)
    unknown = SimpleNamespace(transport="udp", host="127.0.0.1", port=7001)
    assert log.remote_ms(remote) is None  # not stamped yet
    log.stamp_remote([remote])
    stamped = log.remote_ms(remote)
    assert stamped is not None and 0 <= stamped < 60_000  # ms since begin(), not seconds
    log.stamp_remote([remote])
    assert log.remote_ms(remote) == stamped  # the first arrival counts, not the latest
    assert log.remote_ms(unknown) is None


def test_ice_config_validates_and_lists_servers() -> None:
    config = IceConfig(
        ice_servers=[  # type: ignore[arg-type]  # a list is accepted and frozen to a tuple
            IceServer("stun:127.0.0.1:3478"),
            IceServer(["turn:127.0.0.1:3478?transport=udp", "turns:127.0.0.1:5349"], "u", "c"),
        ]
    )
    assert isinstance(config.ice_servers, tuple)
    assert config.stun_urls == ["stun:127.0.0.1:3478"]
    assert config.turn_urls == ["turn:127.0.0.1:3478?transport=udp", "turns:127.0.0.1:5349"]
    assert config.has_turn and "credential" not in repr(config.ice_servers[1])
    with pytest.raises(ValueError, match="STUN/TURN URL"):
        IceConfig(ice_servers=(IceServer("http://x"),))
    with pytest.raises(ValueError, match="turn_timeout"):
        IceConfig(turn_timeout=0)
    # never an implicit Google STUN server: the aiortc configuration lists exactly ours
    assert IceConfig().rtc_configuration().iceServers == []
