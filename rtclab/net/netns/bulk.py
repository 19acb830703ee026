"""Real TCP cross traffic between namespaces: a bulk transfer (the kernel's own congestion
control, CUBIC by default) that competes with the media for an impaired link.

The link impairs it only if the host's NFQUEUE rules take its port
(``impair_namespace(..., tcp_ports=(port,))``); both ends are stand-alone Python processes.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass, field
from typing import Any

from ..._proc import die_with_parent

__all__ = ["TcpBulk"]

RECEIVER = """
import json, socket, sys, time
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind((sys.argv[1], int(sys.argv[2])))
server.listen(1)
print(json.dumps({"ready": True}), flush=True)
conn, _ = server.accept()
total, first, last = 0, None, None
while data := conn.recv(1 << 16):
    last = time.monotonic()
    first = first or last
    total += len(data)
print(json.dumps({"bytes": total, "seconds": (last or 0) - (first or 0)}), flush=True)
"""

SENDER = """
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
end, chunk = time.monotonic() + float(sys.argv[3]), bytes(1 << 16)
while time.monotonic() < end:
    s.sendall(chunk)
s.close()
"""


@dataclass
class TcpBulk:
    """A TCP bulk transfer from ``sender`` to ``receiver`` (namespaces) at ``address:port``
    for ``seconds``; :meth:`start`, then :meth:`wait` for ``{"bytes", "seconds", "kbps"}``
    (goodput as the receiver saw it)."""

    sender: str
    receiver: str
    address: str
    port: int = 5201
    seconds: float = 5.0
    _processes: list[asyncio.subprocess.Process] = field(default_factory=list, init=False)

    async def start(self) -> TcpBulk:
        python = (sys.executable, "-c")
        receiver = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", self.receiver, *python, RECEIVER, self.address, str(self.port),
            stdout=asyncio.subprocess.PIPE, preexec_fn=die_with_parent(),
        )  # fmt: skip
        self._processes.append(receiver)
        assert receiver.stdout is not None
        line = await asyncio.wait_for(receiver.stdout.readline(), 15)
        if json.loads(line or b"{}") != {"ready": True}:
            raise RuntimeError(f"the TCP receiver in {self.receiver!r} did not start")
        sender = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", self.sender, *python, SENDER, self.address, str(self.port),
            str(self.seconds), preexec_fn=die_with_parent(),
        )  # fmt: skip
        self._processes.append(sender)
        return self

    async def wait(self) -> dict[str, Any]:
        receiver, sender = self._processes
        await sender.wait()
        assert receiver.stdout is not None
        result: dict[str, Any] = json.loads(await asyncio.wait_for(receiver.stdout.read(), 30))
        await receiver.wait()
        seconds = result["seconds"]
        result["kbps"] = result["bytes"] * 8 / 1000 / seconds if seconds > 0 else 0.0
        return result

    def stop(self) -> None:
        for process in self._processes:
            if process.returncode is None:
                process.kill()
