"""The `rtclab` console script: help for every subcommand, and `serve` really serving."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from rtclab.signaling.client import SignalingClient
from rtclab.signaling.server import SignalingServer

EXE = str(Path(sys.executable).with_name("rtclab"))


@pytest.mark.parametrize("args", [["--help"], ["demo", "--help"], ["serve", "--help"]])
async def test_help(args: list[str]) -> None:
    proc = await asyncio.create_subprocess_exec(
        EXE, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0
    assert b"usage: rtclab" in out


async def test_no_command_prints_help_and_fails() -> None:
    proc = await asyncio.create_subprocess_exec(
        EXE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    assert b"demo" in out and b"serve" in out


async def test_serve_relays_between_two_clients_then_stops_on_sigterm() -> None:
    proc = await asyncio.create_subprocess_exec(
        EXE, "serve", "--host", "127.0.0.1", "--port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        url = line.split()[-1]
        assert url.startswith("ws://127.0.0.1:") and url.endswith("/signal"), line
        alice = await SignalingClient.connect(url)
        bob = await SignalingClient.connect(url)
        assert await alice.join("room", "alice") == []
        assert await bob.join("room", "bob") == ["alice"]
        assert (await alice.recv(timeout=5)) == {"type": "peer-joined", "peerId": "bob"}
        await bob.offer("alice", {"type": "offer", "sdp": "v=0"})
        got = await alice.recv(timeout=5)
        assert got["type"] == "offer" and got["from"] == "bob" and got["sdp"]["sdp"] == "v=0"
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        await alice.close()
        await bob.close()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_peer_with_malformed_ice_servers_says_what_is_expected(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from rtclab.cli import main

    args = ["peer", "--signal", "ws://127.0.0.1:9/signal", "--name", "x", "--ice-servers"]
    assert main([*args, "{bad"]) == 2
    assert main([*args, '[{"nourls": 1}]']) == 2
    err = capsys.readouterr().err
    assert err.count("--ice-servers must be a JSON list like") == 2 and "'urls'" in err


# -- mistakes a new user makes: one line, exit 2, no traceback (issue 17, items 4 and 14) --


async def _run(*args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        EXE, *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin"},  # no $RTCLAB_TURN_SECRET from the caller
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _one_line_refusal(code: int, err: str) -> str:
    assert code == 2, err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


async def test_version() -> None:
    import rtclab

    code, out, err = await _run("--version")
    assert code == 0, err
    assert out.strip() == f"rtclab {rtclab.__version__}"


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "no such file"),
        ("DIR", "it is a folder"),
        ("", "the file is empty"),
        ("\n\nsecret-on-line-3\n", "its first line is empty"),
    ],
    ids=["missing", "directory", "empty", "blank-first-line"],
)
async def test_turn_credentials_bad_secret_file(
    tmp_path: Path, content: str | None, says: str
) -> None:
    path = tmp_path / "secret"
    if content == "DIR":
        path.mkdir()
    elif content is not None:
        path.write_text(content)
    code, out, err = await _run("turn-credentials", "--secret-file", str(path))
    line = _one_line_refusal(code, err)
    assert line.startswith(f"rtclab turn-credentials: --secret-file {path}: {says}"), line
    assert "first line" in line  # how to fix it
    assert out == ""


async def test_turn_credentials_empty_stdin_and_no_secret_at_all() -> None:
    code, _, err = await _run("turn-credentials", "--secret-file", "-", stdin=b"")
    assert "stdin gave no secret" in _one_line_refusal(code, err)
    code, _, err = await _run("turn-credentials")
    assert "set RTCLAB_TURN_SECRET" in _one_line_refusal(code, err)


@pytest.mark.parametrize("ttl", ["-5", "0", "soon"])
async def test_turn_credentials_refuses_a_non_positive_ttl(tmp_path: Path, ttl: str) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    code, out, err = await _run("turn-credentials", "--secret-file", str(secret), "--ttl", ttl)
    assert code == 2 and "Traceback" not in err, err
    assert out == ""  # no (expired) credentials printed
    assert f"argument --ttl: give a positive whole number of seconds, not '{ttl}'" in err


async def test_serve_with_a_missing_turn_secret_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    code, out, err = await _run("serve", "--port", "0", "--turn-secret-file", str(missing))
    line = _one_line_refusal(code, err)
    assert line.startswith(f"rtclab serve: --turn-secret-file {missing}: no such file"), line
    assert "listening" not in out


@pytest.mark.parametrize("peers", ["0", "1", "9", "three"])
async def test_demo_peers_out_of_range_is_refused_by_argparse(tmp_path: Path, peers: str) -> None:
    code, out, err = await _run("demo", "--peers", peers, "--out", str(tmp_path / "out"))
    assert code == 2 and "Traceback" not in err, err
    assert f"argument --peers: give a whole number from 2 to 8, not '{peers}'" in err
    assert out == "" and not (tmp_path / "out").exists()  # refused before anything started


async def test_demo_help_states_the_peer_range() -> None:
    code, out, _ = await _run("demo", "--help")
    assert code == 0 and "number of peers, 2 to 8" in out


async def test_peer_with_a_name_already_in_the_room(server: SignalingServer) -> None:
    carl = await SignalingClient.connect(server.url)
    try:
        assert await carl.join("lab", "carl") == []
        code, out, err = await _run(
            "peer", "--signal", server.url, "--name", "carl", "--room", "lab",
            "--no-video", "--no-audio", "--no-data", "--duration", "5",
        )  # fmt: skip
    finally:
        await carl.close()
    line = _one_line_refusal(code, err)
    assert "user 'carl' is already in room 'lab'" in line and "pick another --name" in line
    assert '"event": "error"' in out  # the event stream still says it, as JSON


def test_a_reader_that_goes_away_is_no_traceback(tmp_path: Path) -> None:
    """``rtclab turn-credentials ... | head``: the pipe closes before the JSON is written."""
    import subprocess

    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    read, write = os.pipe()
    os.close(read)  # nobody will ever read: the first write gets EPIPE
    try:
        done = subprocess.run(
            [EXE, "turn-credentials", "--secret-file", str(secret)],
            stdout=write, stderr=subprocess.PIPE, text=True, timeout=60,
        )  # fmt: skip
    finally:
        os.close(write)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 141


async def test_peer_with_an_estimator_that_cannot_be_loaded() -> None:
    for spec, said in [
        ("LossBasedAimd", "is not MODULE:NAME"),
        ("rtclab.nowhere:X", "cannot import 'rtclab.nowhere'"),
        ("rtclab.cc:Nope", "rtclab.cc has no class or function 'Nope'"),
    ]:
        code, _, err = await _run(
            "peer", "--signal", "ws://127.0.0.1:9/signal", "--name", "x", "--estimator", spec
        )
        line = _one_line_refusal(code, err)
        assert line.startswith("rtclab peer: --estimator:") and said in line, line


async def test_peer_process_runs_the_named_estimator(make_peer: Any) -> None:
    """`rtclab peer --estimator rtclab.cc:LossBasedAimd` receives alice's video and its
    estimate (the AIMD's 300 kbps start) sets alice's encoder target."""
    from helpers import until

    from rtclab._compat.aiortc import sender_encoder

    alice = await make_peer("alice", join=False, audio=False, data=False, room="cc-cli")
    proc = await asyncio.create_subprocess_exec(
        EXE, "peer", "--signal", alice.signaling_url, "--name", "bob", "--room", "cc-cli",
        "--no-video", "--no-audio", "--no-data", "--duration", "20",
        "--estimator", "rtclab.cc:LossBasedAimd",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        while b'"event": "joined"' not in await asyncio.wait_for(proc.stdout.readline(), 20):
            pass
        await alice.join()
        await alice.wait_connected(count=1)
        sender = alice.connections["bob"]._senders["video"]
        encoder = await until(lambda: sender_encoder(sender), what="alice's encoder")
        await until(lambda: encoder.target_bitrate == 300_000, what="bob's REMB")
        line = b""
        while b'"event": "estimator"' not in line:
            line = await asyncio.wait_for(proc.stdout.readline(), 10)
        assert json.loads(line)["value"] == "loss-based AIMD"
    finally:
        proc.terminate()
        await proc.wait()
