"""LinkControl: slider values set from code change the host's link live and land as events —
on the emulated network, on a namespace's NFQUEUE worker (root), and rendered in a real
JupyterLab in headless Chromium (screenshot)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_jupyterlab import (
    CHROMIUM,
    CHROMIUM_ARGS,
    SCREENSHOTS,
    _poll,
    _run_all_cells,
    start_jupyterlab,
)

from rtclab.net import Link, Network
from rtclab.net.netns.host import NetnsHost
from rtclab.net.nfqueue import impair_namespace
from rtclab.stats import StatsCollector
from rtclab.widgets.link_control import LinkControl


async def test_sliders_change_the_emulated_link_and_record_events() -> None:
    collector = StatsCollector()
    with Network(seed=1) as net:
        host = net.host("alice", link=Link(delay_ms=20, rate_kbps=1000))
        control = LinkControl(host, collector)
        assert control.delay_ms.value == 20 and control.rate_kbps.value == 1000
        control.loss.value = 0.05
        control.delay_ms.value = 80
        control.queue_ms.value = 150
        assert host.link == Link(delay_ms=80, loss=0.05, rate_kbps=1000, queue_ms=150)
        assert host.up.link is host.link and host.down.link is host.link  # live, same queues
        arrive = host.down.admit(0.0, 125)
        assert arrive is not None and arrive == pytest.approx(0.001 + 0.08)
        control.rate_kbps.value = 0  # unlimited
        assert host.link.rate_kbps is None
        control.up.value = False
        assert not host.link.up and host.up.admit(1.0, 100) is None
        assert "down" in control.status.value
        control.up.value = True
        control.close()
    events = collector.events
    assert list(events["peer"].unique()) == ["network"]
    assert list(events["event"]) == ["set-link"] * 4 + ["link-down", "link-up"]
    assert "5.0% loss" in events["value"].iloc[0] and events["value"].iloc[4] == "down"


async def test_a_trace_stays_until_the_rate_is_set_by_hand() -> None:
    with Network() as net:
        host = net.host("bob", link=Link(trace=(1, 2, 10)))
        control = LinkControl(host)
        control.delay_ms.value = 10
        assert host.link.trace == (1, 2, 10) and host.link.delay_ms == 10
        control.rate_kbps.value = 500
        assert host.link.trace is None and host.link.rate_kbps == 500


def _no_root() -> str | None:
    if os.geteuid() != 0 or shutil.which("iptables") is None:
        return "needs root and iptables"
    return None


@pytest.fixture
def namespace() -> Iterator[str]:
    reason = _no_root()
    if reason:
        pytest.skip(reason)
    name = f"rtclab-lc-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)


@pytest.mark.netns
async def test_sliders_change_a_namespace_link(namespace: str) -> None:
    impairment = await asyncio.to_thread(impair_namespace, namespace, Link(rate_kbps=2000))
    host = NetnsHost("ns", namespace, "10.0.0.2", "open", impairment=impairment)
    events: list[tuple[str, str | None, str, object]] = []
    control = LinkControl(host, lambda *e: events.append(e))
    control.rate_kbps.value = 700
    control.up.value = False
    assert impairment.link == Link(rate_kbps=700, up=False)
    await asyncio.sleep(0.8)  # the worker writes its status 4 times a second
    assert impairment.status()["up"]["capacity_kbps"] == 0.0  # down
    control.up.value = True
    await asyncio.sleep(0.8)
    assert impairment.status()["down"]["capacity_kbps"] == 700
    assert [e[2] for e in events] == ["set-link", "link-down", "link-up"]
    control.close()
    await asyncio.to_thread(impairment.close)


CELLS = [
    "from rtclab.net import Link, Network\n"
    "from rtclab.stats import StatsCollector\n"
    "from rtclab.widgets.link_control import LinkControl\n"
    "net = Network()\n"
    "host = net.host('alice', link=Link(delay_ms=40, jitter_ms=5, loss=0.02, rate_kbps=1500))\n"
    "collector = StatsCollector()\n"
    "control = LinkControl(host, collector)\n"
    "control",
    "control.queue_ms.value = 200\nprint(host.link.queue_ms, len(collector.events))",
]


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"needs Debian's chromium at {CHROMIUM}")
async def test_link_control_renders_in_jupyterlab(tmp_path: Path) -> None:
    from playwright.async_api import async_playwright

    with start_jupyterlab(tmp_path, "link.ipynb", CELLS) as jupyterlab:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
            )
            try:
                page = await browser.new_page(viewport={"width": 1000, "height": 900})
                await page.goto(f"{jupyterlab.url}/lab/tree/link.ipynb?token={jupyterlab.token}")
                await page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
                await _run_all_cells(page)
                facts = await _poll(
                    page,
                    "() => document.querySelector('.jp-Notebook')?.innerText",
                    lambda text: "link of alice" in text and "200.0 1" in text,
                    timeout=90,
                    what="LinkControl and the second cell's output",
                )
                sliders = await page.locator(".widget-slider").count()
                assert sliders == 6, facts
                assert "queue 200 ms" in facts and "loss" in facts
                await page.locator(".widget-vbox").first.screenshot(
                    path=str(SCREENSHOTS / "link-control.png")
                )
            finally:
                await browser.close()
