"""The parent side of NFQUEUE impairment: start the worker in a namespace, add and remove
the iptables rules that feed its queues, collect its counters."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..link import Link
from .codec import NfqueueError

__all__ = ["NamespaceImpairment", "impair_namespace"]


def _iptables_rules(queues: tuple[int, int], tcp_ports: tuple[int, ...] = ()) -> list[list[str]]:
    up, down = queues
    rules = [
        ["OUTPUT", "!", "-o", "lo", "-p", "udp", "-j", "NFQUEUE", "--queue-num", str(up)],
        ["INPUT", "!", "-i", "lo", "-p", "udp", "-j", "NFQUEUE", "--queue-num", str(down)],
    ]
    for port in tcp_ports:  # both ends of a TCP flow on that port: its data and its ACKs
        for match in ("--dport", "--sport"):
            tcp = ["-p", "tcp", match, str(port), "-j", "NFQUEUE"]
            rules.append(["OUTPUT", "!", "-o", "lo", *tcp, "--queue-num", str(up)])
            rules.append(["INPUT", "!", "-i", "lo", *tcp, "--queue-num", str(down)])
    return rules


def _iptables(namespace: str, action: str, rule: list[str]) -> subprocess.CompletedProcess[str]:
    command = ["ip", "netns", "exec", namespace, "iptables", "-w", action, *rule]
    return subprocess.run(command, capture_output=True, text=True, timeout=15)


_live: set[NamespaceImpairment] = set()


def _close_all() -> None:
    for impairment in list(_live):
        with contextlib.suppress(Exception):
            impairment.close()


atexit.register(_close_all)  # the namespace backend deletes namespaces; rules are ours


@dataclass(eq=False)  # identity hash: live impairments sit in a set until closed
class NamespaceImpairment:
    """A running impairment of one namespace: the process and its iptables rules.

    :meth:`close` (or leaving the ``with`` block) removes both and returns the counters
    ``{"up": {...}, "down": {...}}`` with ``sent``, ``lost``, ``queue_drops`` and
    ``kernel_drops`` (packets the kernel dropped because our queue or socket was full).
    """

    namespace: str
    link: Link
    queues: tuple[int, int]
    process: subprocess.Popen[str]
    _stderr: IO[str]
    status_file: str | None = None
    tcp_ports: tuple[int, ...] = ()
    _rules: list[list[str]] = field(default_factory=list, init=False)
    counters: dict[str, Any] | None = field(default=None, init=False)

    def _errors(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().strip()

    def _install(self) -> None:
        for rule in _iptables_rules(self.queues, self.tcp_ports):
            result = _iptables(self.namespace, "-A", rule)
            if result.returncode != 0:
                raise NfqueueError(
                    f"iptables in namespace {self.namespace!r} failed: {result.stderr.strip()}"
                )
            self._rules.append(rule)

    def _tell(self, link: Link) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"link": link.to_json()}) + "\n")
        self.process.stdin.flush()

    def set_link(self, link: Link) -> None:
        """Change the link live (the worker keeps its queues; a schedule or trace restarts)."""
        if self.counters is not None:
            raise NfqueueError(f"the impairment of {self.namespace!r} is closed")
        self._tell(link)
        self.link = link

    def status(self) -> dict[str, Any]:
        """``{"up": {...}, "down": {...}, "t": ...}``: each direction's ``capacity_kbps``,
        ``queue_delay_ms`` and counters as the worker last wrote them (every 0.25 s), and
        when (``time.monotonic()``)."""
        if self.status_file is None:
            return {}
        with contextlib.suppress(OSError, ValueError):
            status: dict[str, Any] = json.loads(Path(self.status_file).read_text())
            return status
        return {}

    def close(self) -> dict[str, Any]:
        """Remove the rules, then stop the process (it accepts what it holds) and return counters.

        Rules go first so no packet meets a queue nobody reads (the kernel would drop it).
        Idempotent; tolerant of a namespace that is already deleted.
        """
        if self.counters is not None:
            return self.counters
        _live.discard(self)
        for rule in reversed(self._rules):
            _iptables(self.namespace, "-D", rule)  # fails harmlessly if the namespace is gone
        self._rules.clear()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        assert self.process.stdin is not None and self.process.stdout is not None
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        out = self.process.stdout.read()  # one line; readline() may have buffered part of it
        self.process.stdout.close()
        self.counters = {}
        for line in reversed(out.splitlines()):
            with contextlib.suppress(ValueError):
                parsed = json.loads(line)
                if isinstance(parsed, dict) and "up" in parsed:
                    self.counters = parsed
                    break
        errors = self._errors()
        self._stderr.close()
        if self.status_file is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.status_file)
        if not self.counters:
            raise NfqueueError(
                f"impairment process in {self.namespace!r} ended without counters "
                f"(exit {self.process.returncode}): {errors}"
            )
        return self.counters

    def __enter__(self) -> NamespaceImpairment:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
        else:  # do not hide the error that got us here
            with contextlib.suppress(NfqueueError):
                self.close()


def _require() -> None:
    if os.geteuid() != 0:
        raise NfqueueError("NFQUEUE impairment needs root (network namespaces and iptables)")
    for tool, package in (("ip", "iproute2"), ("iptables", "iptables")):
        if shutil.which(tool) is None:
            raise NfqueueError(f"{tool!r} not found: install the Debian package {package!r}")


def impair_namespace(
    namespace: str,
    link: Link,
    *,
    seed: int = 0,
    queues: tuple[int, int] = (0, 1),
    timeout: float = 15.0,
    tcp_ports: tuple[int, ...] = (),
) -> NamespaceImpairment:
    """Impair ``namespace``'s UDP traffic with ``link``, both ways, until ``close()``.

    Outgoing packets (``OUTPUT``, uplink) go through queue ``queues[0]``, incoming ones
    (``INPUT``, downlink) through ``queues[1]``, each direction with its own
    :class:`LinkState` (seeds ``seed`` and ``seed + 1``). Only UDP over IPv4 and not on
    ``lo`` is queued: media and ICE are impaired, TCP signaling and loopback are not, as
    in the emulated network; ``tcp_ports`` adds the TCP flows to or from those ports
    (cross traffic such as :class:`~rtclab.net.netns.bulk.TcpBulk`), which then share the
    queue. Routed (``FORWARD``) traffic is not touched, so impair hosts, not routers. The
    process starts and binds its queues before the rules exist, so no packet is ever queued
    to nobody. Queue numbers are per namespace.
    """
    _require()
    status = tempfile.NamedTemporaryFile(prefix="rtclab-nfq-", suffix=".json", delete=False)
    status.close()
    command = [
        "ip", "netns", "exec", namespace, sys.executable, "-m", "rtclab.net.nfqueue",
        "--up-queue", str(queues[0]), "--down-queue", str(queues[1]),
        "--link", "-", "--seed", str(seed), "--status-file", status.name,
    ]  # fmt: skip
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[3])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    stderr = tempfile.TemporaryFile(mode="w+")  # a file, so a chatty child never blocks
    process = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env=env,
    )
    impairment = NamespaceImpairment(
        namespace, link, queues, process, stderr, status.name, tuple(tcp_ports)
    )
    try:
        impairment._tell(link)
        _wait_ready(process, timeout)
        impairment._install()
    except BaseException as exc:
        if process.poll() is None:
            process.kill()
        process.wait()
        for rule in impairment._rules:
            _iptables(namespace, "-D", rule)
        errors = impairment._errors()
        stderr.close()
        with contextlib.suppress(OSError):
            os.unlink(status.name)
        if isinstance(exc, NfqueueError) and not errors:
            raise
        raise NfqueueError(f"{exc}; impairment process stderr: {errors or '(empty)'}") from exc
    _live.add(impairment)
    return impairment


def _wait_ready(process: subprocess.Popen[str], timeout: float) -> None:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise NfqueueError(f"impairment process not ready after {timeout:.0f} s")
            if selector.select(remaining):
                line = process.stdout.readline()
                if not line:
                    raise NfqueueError(f"impairment process exited ({process.wait()})")
                with contextlib.suppress(ValueError):
                    if json.loads(line) == {"ready": True}:
                        return
