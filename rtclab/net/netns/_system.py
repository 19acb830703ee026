"""What the namespace backend asks of the machine: tools present, `ip` calls, namespaces
named ``rtclab-<pid>-...`` listed and deleted (with what runs in them)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

__all__ = ["PREFIX", "NetnsUnavailable", "cleanup_stale", "require_netns"]

PREFIX = "rtclab-"


class NetnsUnavailable(RuntimeError):
    """The namespace backend cannot run here; the message names what is missing."""


def require_netns() -> None:
    """Raise :class:`NetnsUnavailable` naming what is missing (root, ip, nft, turnserver)."""
    missing = []
    if not sys.platform.startswith("linux"):
        missing.append("Linux")
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        missing.append("root (network namespaces need CAP_NET_ADMIN; run as root)")
    for tool, package in (("ip", "iproute2"), ("nft", "nftables"), ("turnserver", "coturn")):
        if shutil.which(tool) is None:
            missing.append(f"`{tool}` (Debian package {package})")
    if missing:
        raise NetnsUnavailable(
            "the Linux-namespace backend needs "
            + ", ".join(missing)
            + "; the emulated network (rtclab.net.Network) needs none of this"
        )


def run(*args: str, check: bool = True, input: str | None = None) -> str:
    """Run a short setup command (``ip``, ``nft``, ``tc``); its stderr in the error."""
    result = subprocess.run(args, capture_output=True, text=True, input=input, timeout=20)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


async def run_async(args: list[str], timeout: float) -> str:
    """Run a command from inside the event loop (a probe in a host namespace): its stdout."""
    process = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except asyncio.TimeoutError:
        process.kill()
        await process.wait()
        raise
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(args[4:6])} failed: {err.decode()[-800:]}")
    return out.decode()


def namespaces() -> list[str]:
    out = run("ip", "netns", "list", check=False)
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def delete_namespace(name: str) -> None:
    """Kill whatever runs in ``name`` (our own processes), then delete it."""
    if not name.startswith(PREFIX):
        raise ValueError(f"refusing to delete a namespace rtclab did not name: {name}")
    pids = run("ip", "netns", "pids", name, check=False).split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError, PermissionError):
            os.kill(int(pid), signal.SIGKILL)
    run("ip", "netns", "del", name, check=False)


def cleanup_stale() -> list[str]:
    """Delete ``rtclab-<pid>-*`` namespaces whose creating process no longer runs."""
    removed = []
    for name in namespaces():
        if not name.startswith(PREFIX):
            continue
        parts = name.split("-")
        if len(parts) < 3 or not parts[1].isdigit():
            continue
        if int(parts[1]) != os.getpid() and not Path(f"/proc/{parts[1]}").exists():
            delete_namespace(name)
            removed.append(name)
    return removed
