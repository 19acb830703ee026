"""What README.md and the notebooks' prose claim, checked against what the code does."""

from __future__ import annotations

import json
import re
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from rtclab.signaling.server import SignalingServer

ROOT = Path(__file__).parent.parent


def _section(markdown: str, title: str) -> str:
    """The text under ``## title`` up to the next ``## `` heading, on one line."""
    body = markdown.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]
    return " ".join(body.split())


def _notebook_prose(name: str) -> str:
    cells = json.loads((ROOT / "notebooks" / name).read_text())["cells"]
    text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    return " ".join(text.split())


async def _error_then_close(ws: ClientConnection) -> tuple[str, int | None]:
    """The refusal's ``code``, then the close code that follows it."""
    code = json.loads(await ws.recv())["code"]
    try:
        await ws.recv()
    except ConnectionClosed:
        pass
    return code, ws.close_code


async def test_readme_says_which_refusals_close_the_connection() -> None:
    text = _section((ROOT / "README.md").read_text(), "Signaling protocol")
    assert "the connection stays usable" in text
    claimed = dict(re.findall(r"`([a-z-]+)` and (?:then close code )?(\d{4})", text))
    assert claimed == {"message-too-large": "1009", "unauthorized": "1008", "server-full": "1013"}
    assert "64 KiB" in text

    async with SignalingServer(port=0, rate=None) as srv:
        async with connect(srv.url) as ws, connect(srv.url) as other:
            await other.send(json.dumps({"type": "join", "roomId": "r", "userId": "carl"}))
            await other.recv()
            bad = [
                "{not json",
                json.dumps({"type": "bogus"}),
                json.dumps({"type": "offer", "to": "carl", "sdp": {}}),
                json.dumps({"type": "join", "roomId": "r", "userId": "carl"}),
            ]
            codes = []
            for frame in bad:
                await ws.send(frame)
                codes.append(json.loads(await ws.recv())["code"])
            assert codes == ["invalid-json", "unknown-type", "not-joined", "duplicate-user"]
            await ws.send(json.dumps({"type": "join", "roomId": "r", "userId": "dora"}))
            assert json.loads(await ws.recv())["type"] == "room-joined"  # still usable
            await ws.send("x" * (64 * 1024 + 1))
            assert await _error_then_close(ws) == ("message-too-large", 1009)
    async with SignalingServer(port=0, token="t0ken", max_clients=1) as srv:
        async with connect(srv.url) as ws:
            await ws.send(json.dumps({"type": "join", "roomId": "r", "userId": "u", "token": "x"}))
            assert await _error_then_close(ws) == ("unauthorized", 1008)
        async with connect(srv.url + "?token=t0ken") as first, connect(srv.url) as second:
            assert await _error_then_close(second) == ("server-full", 1013)
            assert first.close_code is None
