"""Page load -> first remote video frame, headless Chromium <-> aiortc on loopback (figures).

    sudo .venv/bin/python bench/browser_first_frame.py [--runs 10]

Each run opens a fresh browser context on the served client (``lab.browser_url``) in a room
where an aiortc peer waits; the page offers, trickles, and we read, from the page's own
clock (``performance.now()``, 0 = navigation start): when the connection to the kernel peer
was ``connected`` and when the first remote frame was presented (``requestVideoFrameCallback``
on the remote video). Everything runs in a fresh loopback-only network namespace (root
needed), entered with ``setns`` so Chromium and the lab see only 127.0.0.1.
Target (issue 6): page load to first remote frame < 500 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import os
import secrets
import statistics
import subprocess
import time
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")


def setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
        raise OSError(ctypes.get_errno(), "setns failed")


async def measure(runs: int) -> list[tuple[float, float]]:
    from playwright.async_api import async_playwright

    from rtclab import Lab
    from rtclab.web import CHROMIUM_FLAGS

    results: list[tuple[float, float]] = []
    async with Lab(name="bench-browser") as lab:
        await lab.peer("kernel", room="bench")
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=str(CHROMIUM), args=list(CHROMIUM_FLAGS)
            )
            try:
                for i in range(runs + 1):  # run 0 warms Chromium's caches up: not counted
                    context = await browser.new_context()
                    page = await context.new_page()
                    await page.goto(lab.browser_url("bench", f"b{i}", audio=0, stats=0))
                    await page.wait_for_function(
                        "window.rtclab && window.rtclab.firstFrameMs !== null", timeout=15_000
                    )
                    first = await page.evaluate("window.rtclab.firstFrameMs")
                    connected = await page.evaluate("window.rtclab.connectedMs.kernel ?? NaN")
                    await context.close()
                    if i:
                        results.append((connected, first))
                    await asyncio.sleep(0.3)  # let the kernel peer close the old connection
            finally:
                await browser.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    if os.geteuid() != 0 or not CHROMIUM.exists():
        raise SystemExit("needs root (a loopback-only network namespace) and /usr/bin/chromium")
    name = f"rtclab-br-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        target = os.open(f"/run/netns/{name}", os.O_RDONLY)
        setns(target)
        os.close(target)
        started = time.monotonic()
        try:
            results = asyncio.run(measure(args.runs))
        finally:
            setns(original)
    finally:
        os.close(original)
        subprocess.run(["ip", "netns", "delete", name], check=False)
    connected = [c for c, _ in results]
    first = [f for _, f in results]
    took = time.monotonic() - started
    print(f"{len(results)} runs in {took:.1f} s (page load = navigation start)")
    for label, values in (("connected", connected), ("first remote frame", first)):
        print(
            f"  {label:>18}: median {statistics.median(values):6.0f} ms, "
            f"min {min(values):6.0f}, max {max(values):6.0f}"
        )
    verdict = "met" if statistics.median(first) < 500 else "MISSED"
    print(f"  target < 500 ms to first frame (median): {verdict}")


if __name__ == "__main__":
    main()
