"""BrowserPeer in a real JupyterLab in headless Chromium: the notebook's tab joins a kernel peer.

JupyterLab, its kernel and Chromium all run in a fresh loopback-only network namespace
(``loopback_netns``). Signaling goes through the widget comm (no socket from the page to the
lab's server); the kernel's PeerWidget shows the frames the aiortc peer receives from the
tab. Screenshots go to ``RTCLAB_SCREENSHOTS`` (default /tmp/rtclab-jupyterlab).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_jupyterlab import SCREENSHOTS, JupyterLab, _poll, _run_all_cells, start_jupyterlab

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CELLS = [
    "from rtclab import Lab\n"
    "lab = Lab(name='browser-peer-test', stats_interval=0.5)\n"
    "await lab.start()\n"
    "kernel = await lab.peer('kernel', room='nb')\n"
    "kernel",
    "tab = lab.browser_peer('nb', 'tab', stats_interval_ms=500)\ntab",
]

TAB_FACTS = """async () => {
  const view = (window.rtclabBrowserPeers || [])[0];
  const el = document.querySelector('.rtclab-browser-peer');
  if (!view || !el || !view.mesh) return null;
  const link = view.mesh.links.get('kernel');
  let frames = 0;
  if (link) (await link.pc.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') frames += s.framesDecoded || 0;
  });
  return {text: el.innerText, frames, state: link ? link.pc.connectionState : null,
          videos: el.querySelectorAll('video').length, errors: view.errors};
}"""


@pytest.fixture
def lab_in_netns(loopback_netns: str, tmp_path: Path) -> Iterator[JupyterLab]:
    """JupyterLab started inside the namespace (its kernels inherit it)."""
    with start_jupyterlab(tmp_path, "browser-peer.ipynb", CELLS) as lab:
        yield lab


async def test_browser_peer_widget_sends_frames_to_a_kernel_peer(
    lab_in_netns: JupyterLab, chromium: Any
) -> None:
    context = await chromium.new_context(viewport={"width": 1300, "height": 1400})
    page = await context.new_page()
    await page.goto(f"{lab_in_netns.url}/lab/tree/browser-peer.ipynb?token={lab_in_netns.token}")
    await page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    await _run_all_cells(page)

    tab = await _poll(
        page,
        TAB_FACTS,
        lambda f: f["state"] == "connected" and f["frames"] > 5 and f["videos"] >= 2,
        timeout=60,
        what="BrowserPeer connected and decoding the kernel's video",
    )
    assert "joined" in tab["text"] and tab["errors"] == []
    # frames arrive in the kernel: its PeerWidget counts received video from the tab
    kernel_text = await _poll(
        page,
        "() => document.querySelector('.rtclab-peer-widget')?.innerText ?? null",
        lambda t: "tab" in t and "connected" in t and "received: audio" not in t and "video" in t,
        timeout=30,
        what="kernel peer receiving the tab's video",
    )
    assert "host/host" in kernel_text
    # its stats reports reach the lab through the comm
    await _poll(
        page,
        TAB_FACTS,
        lambda f: " 0 stats reports" not in f["text"] and "stats reports" in f["text"],
        timeout=10,
        what="stats reports relayed",
    )
    await asyncio.sleep(0.5)
    widget = page.locator(".rtclab-browser-peer")
    await widget.screenshot(path=str(SCREENSHOTS / "browser-peer.png"))
    outputs = await page.inner_text(".jp-Notebook")
    assert "Traceback" not in outputs and "Error displaying widget" not in outputs
