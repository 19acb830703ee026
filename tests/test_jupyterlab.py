"""A real JupyterLab on loopback in headless Chromium: PeerWidget and Dashboard render as widgets.

Runs a notebook that starts a Lab with two peers, shows ``alice`` (a PeerWidget) and
``lab.dashboard()``; checks DOM facts (widget text, preview image decoded and changing, plot
lines drawn) and saves screenshots (``RTCLAB_SCREENSHOTS``, default /tmp/rtclab-jupyterlab).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest

from rtclab.web import CHROMIUM_FLAGS

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(os.environ.get("RTCLAB_SCREENSHOTS", "/tmp/rtclab-jupyterlab"))
CHROMIUM_ARGS = list(CHROMIUM_FLAGS)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"needs Debian's chromium at {CHROMIUM}"),
]

CELLS = [
    "from rtclab import Lab\n"
    "lab = Lab(name='browser-test', stats_interval=0.5)\n"
    "await lab.start()\n"
    "alice = await lab.peer('alice', room='r')\n"
    "bob = await lab.peer('bob', room='r')\n"
    "await lab.wait_connected()\n"
    "alice",
    "dashboard = lab.dashboard(window_s=60)\ndashboard",
]

# User settings for a quiet, deterministic Lab: no news/update toasts, and every cell kept
# in the DOM (JupyterLab 4 otherwise detaches cells scrolled out of view).
SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


@dataclass
class JupyterLab:
    url: str
    token: str
    root: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(url: str, token: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"jupyter lab not ready at {url} after {timeout}s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM lets the server shut its kernels down; SIGKILL the group if it hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: only what we started
            proc.wait(timeout=5)


@contextlib.contextmanager
def start_jupyterlab(tmp_path: Path, notebook: str, cells: list[str]) -> Iterator[JupyterLab]:
    """A real JupyterLab on a free loopback port, serving one notebook made of ``cells``.

    Its config, runtime and settings live under ``tmp_path`` (quiet settings from
    :data:`SETTINGS`); the server is stopped, process group and all, on exit.
    """
    root, home = tmp_path / "root", tmp_path / "jupyter"
    root.mkdir()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    settings = home / "settings"
    for name, value in SETTINGS.items():
        path = settings / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))
    nb = nbformat.v4.new_notebook()  # type: ignore[no-untyped-call]
    nb.cells = [nbformat.v4.new_code_cell(s) for s in cells]  # type: ignore[no-untyped-call]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbformat.write(nb, root / notebook)  # type: ignore[no-untyped-call]

    port, token = _free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
        "PYTHONUNBUFFERED": "1",
    }
    log = (tmp_path / "jupyterlab.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter",
            "lab",
            "--no-browser",
            "--allow-root",
            f"--port={port}",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.token={token}",
            f"--ServerApp.root_dir={root}",
            "--ServerApp.port_retries=0",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_ready(url, token, proc, timeout=60)
        yield JupyterLab(url, token, root)
    finally:
        _stop(proc)
        log.close()


@pytest.fixture
def jupyterlab(tmp_path: Path) -> Iterator[JupyterLab]:
    with start_jupyterlab(tmp_path, "widgets.ipynb", CELLS) as lab:
        yield lab


@pytest.fixture
async def page(jupyterlab: JupyterLab) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        try:
            context = await browser.new_context(viewport={"width": 1400, "height": 1700})
            yield await context.new_page()
        finally:
            await browser.close()


# JS run in the page: facts about the rendered widgets.
WIDGET_FACTS = """() => {
  const w = document.querySelector('.rtclab-peer-widget');
  if (!w) return null;
  const imgs = [...w.querySelectorAll('img')];
  return {
    text: w.innerText,
    images: imgs.map(i => ({src: i.src.slice(0, 5), width: i.naturalWidth})),
  };
}"""

# A fingerprint of the pixels of the remote preview (same-origin blob: canvas is not tainted).
PREVIEW_PIXELS = """() => {
  const imgs = [...document.querySelectorAll('.rtclab-peer-widget img')];
  const img = imgs[imgs.length - 1];
  const c = document.createElement('canvas');
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  c.getContext('2d').drawImage(img, 0, 0);
  return c.toDataURL('image/png');
}"""

PLOT_FACTS = """() => {
  const plot = document.querySelector('.js-plotly-plot');
  if (!plot) return null;
  const lines = [...plot.querySelectorAll('.scatterlayer .trace path.js-line')]
    .filter(p => (p.getAttribute('d') || '').length > 20);
  return {
    svg: plot.querySelectorAll('svg.main-svg').length,
    lines: lines.length,
    legend: [...plot.querySelectorAll('.legendtext')].map(t => t.textContent),
  };
}"""


async def _poll(page: Any, script: str, ok: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = await page.evaluate(script)
        if value is not None and ok(value):
            return value
        await asyncio.sleep(0.5)
    await page.screenshot(path=str(SCREENSHOTS / "timeout.png"), full_page=True)
    raise AssertionError(f"{what} not seen within {timeout}s; last: {value}")


async def _run_all_cells(page: Any) -> None:
    """Run > Run All once the kernel is connected (clicked earlier, JupyterLab drops it)."""
    await page.wait_for_selector(".jp-StatusBar-TextItem:has-text('| Idle')", timeout=60_000)
    for _ in range(3):
        await page.click(".lm-MenuBar-item:has-text('Run')")
        await page.click(".lm-Menu-item[data-command='runmenu:run-all']")
        try:
            await page.wait_for_function(
                "() => [...document.querySelectorAll('.jp-InputPrompt')]"
                ".some(p => /\\[(\\*|\\d+)\\]/.test(p.innerText))",
                timeout=10_000,
            )
            return
        except Exception:
            await page.keyboard.press("Escape")
    raise AssertionError("Run All did not start executing the notebook")


async def test_peer_widget_and_dashboard_render_in_jupyterlab(
    jupyterlab: JupyterLab, page: Any
) -> None:
    await page.goto(f"{jupyterlab.url}/lab/tree/widgets.ipynb?token={jupyterlab.token}")
    await page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    await _run_all_cells(page)

    facts = await _poll(
        page,
        WIDGET_FACTS,
        lambda f: (
            "connected" in f["text"]
            and "host/host" in f["text"]
            and len(f["images"]) >= 2
            and all(i["width"] > 0 for i in f["images"])
        ),
        timeout=90,
        what="PeerWidget with state, path and previews",
    )
    assert "alice" in facts["text"] and "room r" in facts["text"]
    assert all(i["src"] in ("blob:", "data:") for i in facts["images"])
    assert {i["width"] for i in facts["images"]} == {320}

    plot = await _poll(
        page,
        PLOT_FACTS,
        lambda p: p["svg"] > 0 and p["lines"] >= 8,
        timeout=60,
        what="dashboard lines",
    )
    assert {"alice → bob host/host", "bob → alice host/host"} <= set(plot["legend"])
    # every cell has run: the kernel is idle and media flows in its loop between cells
    await page.wait_for_selector(".jp-StatusBar-TextItem:has-text('| Idle')", timeout=30_000)

    # the preview is video, not a still: its pixels change a few times a second
    first = await page.evaluate(PREVIEW_PIXELS)
    await _poll(page, PREVIEW_PIXELS, lambda p: p != first, timeout=5, what="preview change")
    await asyncio.sleep(1.0)  # a few more frames (and counters) for the screenshot
    widget = page.locator(".rtclab-peer-widget")
    await widget.screenshot(path=str(SCREENSHOTS / "peer-widget.png"))
    facts = await page.evaluate(WIDGET_FACTS)
    assert "received: audio" in facts["text"] and "video" in facts["text"]
    await page.locator(".js-plotly-plot").first.scroll_into_view_if_needed()
    await page.locator(".js-plotly-plot").first.screenshot(path=str(SCREENSHOTS / "dashboard.png"))
    await page.screenshot(path=str(SCREENSHOTS / "jupyterlab.png"))
    # no widget fell back to its text repr (e.g. a missing or broken front-end extension)
    outputs = await page.inner_text(".jp-Notebook")
    assert "FigureWidget(" not in outputs and "PeerWidget(" not in outputs
    assert "Error displaying widget" not in outputs and "Traceback" not in outputs
