"""`rtclab demo`: a lab in ten seconds — server, three peers, stats, CSV and an HTML report."""

from __future__ import annotations

import asyncio
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import pandas as pd

from .lab import Lab
from .peer.peer import Peer
from .stats.figures import stats_figure, write_html


class OutputFolderError(Exception):
    """The output folder cannot be created or written: found before the demo starts."""

    def __init__(self, folder: Path, reason: str) -> None:
        super().__init__(f"cannot write to the output folder {folder}: {reason}")
        self.folder = folder


class OutputWriteError(Exception):
    """Writing a result file failed after the run; the summary was printed already."""

    def __init__(self, failures: list[str], summary: pd.DataFrame) -> None:
        super().__init__("could not write " + "; ".join(failures))
        self.failures = failures
        self.summary = summary


def check_output_folder(out: str | Path) -> Path:
    """Create ``out`` and write (then remove) a probe file in it, so that a folder nobody can
    write is reported in a second, not after the whole run."""
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise OutputFolderError(folder, "it is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".rtclab-probe-"):
            pass
    except OSError as exc:
        raise OutputFolderError(folder, exc.strerror or str(exc)) from None
    return folder


@dataclass
class DemoResult:
    summary: pd.DataFrame
    samples_csv: Path
    events_csv: Path
    dashboard_html: Path


def _fmt(value: object, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def format_summary(summary: pd.DataFrame) -> str:
    """A plain-text table (no extra dependency) of :func:`rtclab.stats.summary.pair_summary`.

    Each row is one ``peer -> remote`` pair; every traffic column says its direction with
    an arrow (``->`` what ``peer`` sends to ``remote``, ``<-`` what it receives from
    ``remote``), and a legend under the table spells that out.
    """
    headers = [
        "peer -> remote",
        "connect ms",
        "path",
        "RTCP RTT ms",
        "-> kbps",
        "<- kbps",
        "<- video fps",
        "<- loss %",
        "<- jitter ms",
    ]
    lines = []
    for row in summary.itertuples(index=False):
        lines.append(
            [
                f"{row.peer} -> {row.remote}",
                _fmt(row.connect_ms),
                _fmt(row.path),
                _fmt(row.rtcp_rtt_ms),
                _fmt(row.send_kbps, 0),
                _fmt(row.recv_kbps, 0),
                _fmt(row.recv_fps),
                _fmt(row.recv_loss_pct, 2),
                _fmt(row.recv_jitter_ms),
            ]
        )
    widths = [
        max(len(h), *(len(r[i]) for r in lines)) if lines else len(h) for i, h in enumerate(headers)
    ]
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in lines]
    out.append("")
    out.append(
        "-> : peer sends to remote (audio + video);  <- : peer receives from remote "
        "(kbps: audio + video; fps, loss, jitter: video)"
    )
    return "\n".join(out)


async def run_demo(
    out: str | Path = "rtclab-out",
    *,
    peers: int = 3,
    duration: float = 10.0,
    interval: float = 1.0,
    stream: TextIO | None = None,
) -> DemoResult:
    """Run the demo in the current event loop and return the summary and the files written."""
    stream = stream or sys.stdout
    names = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"]
    if not 2 <= peers <= len(names):
        raise ValueError(f"peers must be between 2 and {len(names)}")
    out = check_output_folder(out)
    async with Lab(stats_interval=interval) as lab:
        print(f"signaling server on {lab.url}", file=stream)
        started = time.monotonic()
        for name in names[:peers]:
            await lab.peer(name, room="demo", video=True, audio=True, data=True)
        await lab.wait_connected(timeout=20)
        links = peers * (peers - 1)
        print(f"{links} peer connections up in {time.monotonic() - started:.2f}s", file=stream)
        deadline = time.monotonic() + duration
        tick = 0
        while (remaining := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(1.0, remaining))
            tick += 1
            for peer in lab.peers.values():
                await peer.send_chat(f"hello #{tick} from {peer.name}")
                peer.send_cursor(tick * 10.0, tick * 5.0)
            frames = sum(
                sum(c.counters.frames_received.values())
                for p in lab.peers.values()
                if isinstance(p, Peer)  # the demo's peers are all in the kernel
                for c in p.connections.values()
            )
            chats = sum(len(p.chat_log) for p in lab.peers.values())
            up = sum(
                c.state == "connected" for p in lab.peers.values() for c in p.connections.values()
            )
            done = min(duration, time.monotonic() - (deadline - duration))
            bar = "#" * int(20 * done / duration)
            print(
                f"[{bar:<20}] {done:4.1f}/{duration:g}s  {up}/{links} connected  "
                f"{frames} frames  {chats} chat lines",
                file=stream,
                flush=True,
            )
        await lab.collector.poll()
        summary = lab.summary()
        # Each write may still fail (folder removed, disk full): the summary is printed anyway.
        files: dict[str, Path] = {}
        failures: list[str] = []
        try:
            files.update(lab.to_csv(out))
        except OSError as exc:
            failures.append(f"samples.csv and events.csv ({exc})")
        try:
            figure = stats_figure(lab.samples, title="rtclab demo")
            files["report"] = write_html(figure, out / "dashboard.html")
        except OSError as exc:
            failures.append(f"dashboard.html ({exc})")
    print("", file=stream)
    print(format_summary(summary), file=stream)
    print("", file=stream)
    for label, path in files.items():
        print(f"{label + ':':<8} {path}", file=stream)
    if failures:
        raise OutputWriteError(failures, summary)
    return DemoResult(summary, files["samples"], files["events"], files["report"])
