"""TURN REST credentials (pure) and the bearer-token endpoint on a real signaling server."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import start_server

from rtclab.ice.credentials import (
    TURN_CREDENTIALS_PATH,
    TurnSecret,
    make_credentials_handler,
    turn_credential,
    turn_credentials,
    turn_username,
)
from rtclab.signaling.server import SignalingServer

SECRET = "north-by-northwest"


def test_credential_is_base64_hmac_sha1_of_username() -> None:
    # The write-up's generateTurnCredentials, computed independently here.
    username = turn_username("alice", 1_700_000_000)
    assert username == "1700000000:alice"
    expected = base64.b64encode(
        hmac.new(SECRET.encode(), username.encode(), hashlib.sha1).digest()
    ).decode()
    assert turn_credential(SECRET, username) == expected
    assert turn_credential(TurnSecret(SECRET), username) == expected


def test_credentials_expire_ttl_after_now() -> None:
    creds = turn_credentials(SECRET, "bob", "turn:127.0.0.1:3478", ttl=600, now=1000.5)
    assert creds.username == "1600:bob" and creds.user == "bob"
    assert creds.expires_at == 1600 and creds.expired  # 1600 s after the epoch: long gone
    fresh = turn_credentials(SECRET, "bob", ["turn:a:1", "turns:a:2?transport=tcp"])
    assert not fresh.expired
    assert [s.urls for s in fresh.ice_servers()] == ["turn:a:1", "turns:a:2?transport=tcp"]


def test_user_with_colon_and_empty_urls_are_refused() -> None:
    with pytest.raises(ValueError, match="':'"):
        turn_credentials(SECRET, "a:b", "turn:x")
    with pytest.raises(ValueError, match="URL"):
        turn_credentials(SECRET, "a", [])


def test_secret_and_credential_never_printed() -> None:
    secret = TurnSecret(SECRET)
    assert SECRET not in repr(secret) and SECRET not in str(secret) and SECRET not in f"{secret}"
    assert secret.reveal() == SECRET and secret == TurnSecret(SECRET)
    creds = turn_credentials(secret, "carol", "turn:127.0.0.1:3478")
    assert creds.credential not in repr(creds)
    assert creds.credential not in repr(creds.ice_server())
    assert len(TurnSecret().reveal()) >= 32  # a fresh random one by default
    with pytest.raises(ValueError):
        TurnSecret("two\nlines")


def test_endpoint_json_is_what_a_browser_hands_to_rtcpeerconnection() -> None:
    body = turn_credentials(SECRET, "dave", ["turn:h:1", "turns:h:2?transport=tcp"]).to_dict()
    (server,) = body["iceServers"]
    assert server["urls"] == ["turn:h:1", "turns:h:2?transport=tcp"]
    assert server["username"].endswith(":dave")
    assert server["credential"] == turn_credential(SECRET, server["username"])


async def _get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def test_endpoint_refuses_requests_without_the_bearer_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    handler = make_credentials_handler(SECRET, ["turn:127.0.0.1:3478"], "tok-123", ttl=60)
    async with SignalingServer(port=0) as server:
        server.add_route(TURN_CREDENTIALS_PATH, handler)
        status, body = await _get(server.port, TURN_CREDENTIALS_PATH)
        assert status == 401 and b"unauthorized" in body
        for bad in ("Bearer nope", "Basic tok-123", "Bearer", "tok-123"):
            status, _ = await _get(server.port, TURN_CREDENTIALS_PATH, {"Authorization": bad})
            assert status == 401, bad
        status, body = await _get(
            server.port, TURN_CREDENTIALS_PATH + "?user=erin",
            {"Authorization": "Bearer tok-123"},
        )  # fmt: skip
    assert status == 200
    data = json.loads(body)
    username = data["iceServers"][0]["username"]
    assert username.endswith(":erin") and data["ttl"] == 60
    assert data["iceServers"][0]["credential"] == turn_credential(SECRET, username)
    assert SECRET not in caplog.text and data["credential"] not in caplog.text


async def test_endpoint_with_a_token_to_user_function() -> None:
    users = {"t-frank": "frank"}
    handler = make_credentials_handler(SECRET, lambda: ["turn:x:1"], users.get)
    async with SignalingServer(port=0) as server:
        server.add_route(TURN_CREDENTIALS_PATH, handler)
        status, _ = await _get(server.port, TURN_CREDENTIALS_PATH, {"Authorization": "Bearer x"})
        assert status == 401
        status, body = await _get(
            server.port, TURN_CREDENTIALS_PATH + "?user=mallory",
            {"Authorization": "Bearer t-frank"},
        )  # fmt: skip
    assert status == 200
    assert json.loads(body)["username"].endswith(":frank")  # the token decides, not ?user=


def test_cli_turn_credentials_reads_the_secret_from_a_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    exe = str(Path(sys.executable).with_name("rtclab"))
    done = subprocess.run(
        [exe, "turn-credentials", "--secret-file", str(secret_file), "--user", "gina",
         "--ttl", "120", "--url", "turn:127.0.0.1:9?transport=tcp"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    data = json.loads(done.stdout)
    assert data["iceServers"][0]["urls"] == ["turn:127.0.0.1:9?transport=tcp"]
    assert data["credential"] == turn_credential(SECRET, data["username"])
    assert SECRET not in done.stdout + done.stderr
    missing = subprocess.run(
        [exe, "turn-credentials"], capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert missing.returncode != 0 and "RTCLAB_TURN_SECRET" in missing.stderr


async def test_rtclab_serve_with_a_turn_secret_file_serves_credentials(tmp_path: Path) -> None:
    """``rtclab serve --turn-secret-file``: the endpoint answers through the same runner as
    plain ``serve``, with the token it prints, and credentials coturn would accept."""
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    server = await start_server(
        "serve", "--turn-secret-file", str(secret_file), module="rtclab.cli"
    )
    try:
        proc = server.proc
        assert proc.stdout is not None
        lines = [(await asyncio.wait_for(proc.stdout.readline(), 10)).decode() for _ in range(3)]
        turn_line = next(line for line in lines if line.startswith("TURN credentials: GET"))
        token = turn_line.rsplit("Bearer ", 1)[1].strip().rstrip("'")
        port = int(server.url.split(":")[2].split("/")[0])
        status, _ = await _get(port, TURN_CREDENTIALS_PATH)
        assert status == 401
        status, body = await _get(
            port, TURN_CREDENTIALS_PATH + "?user=erin", {"Authorization": f"Bearer {token}"}
        )
        assert status == 200, body
        ice = json.loads(body)["iceServers"][0]
        assert ice["username"].endswith(":erin")
        assert ice["credential"] == turn_credential(SECRET, ice["username"])
    finally:
        await server.stop()
