"""The `rtclab` console script: help for every subcommand, and `serve` really serving."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from rtclab.signaling.client import SignalingClient

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
