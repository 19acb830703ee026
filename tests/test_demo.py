"""The demo, in-process and as the real console script: it runs offline and its outputs hold up."""

from __future__ import annotations

import io
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from rtclab import read_events_csv, read_samples_csv
from rtclab.demo import format_summary, run_demo
from rtclab.stats.summary import SUMMARY_COLUMNS

pytestmark = pytest.mark.slow


async def test_demo_outputs(tmp_path: Path) -> None:
    out = io.StringIO()
    result = await run_demo(tmp_path, peers=3, duration=4.0, stream=out)
    text = out.getvalue()
    assert "6 peer connections up" in text
    assert "alice -> bob" in text and "carol -> bob" in text
    header = next(line for line in text.splitlines() if line.startswith("peer -> remote"))
    assert "-> kbps" in header and "<- kbps" in header

    summary = result.summary
    assert len(summary) == 6
    assert set(summary["path"]) == {"host/host"}
    for row in summary.itertuples():
        assert 0 < row.connect_ms < 5000
        assert 0 < row.rtcp_rtt_ms < 200, row
        assert 15 * 0.8 <= row.recv_fps <= 15 * 1.2, row
        assert row.send_kbps > 20 and row.recv_kbps > 20, row
        assert row.recv_loss_pct == 0 or math.isclose(row.recv_loss_pct, 0, abs_tol=1.0)

    samples = read_samples_csv(result.samples_csv)
    assert {"rtcp_rtt_ms", "jitter_ms", "fraction_lost", "bitrate_kbps"} <= set(samples.columns)
    assert set(samples["peer"]) == {"alice", "bob", "carol"}
    assert {"audio", "video"} <= set(samples["kind"])
    events = read_events_csv(result.events_csv)
    assert (events["event"] == "connected").sum() == 6
    html = result.dashboard_html.read_text()
    assert "plotly" in html.lower() and "alice \\u2192 bob" in html
    assert len(html) > 1_000_000  # plotly.js embedded: opens without network


def test_cli_demo_console_script(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("rtclab")
    proc = subprocess.run(
        [str(exe), "demo", "--out", str(tmp_path), "--duration", "3"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "host/host" in proc.stdout
    for name in ("samples.csv", "events.csv", "dashboard.html"):
        assert (tmp_path / name).stat().st_size > 0


# -- an output folder that cannot be written (issue 17, item 3) ----------------------------


@pytest.mark.parametrize("where", ["/proc/forbidden", "under-a-file", "a-file"])
def test_cli_demo_refuses_an_unwritable_out_before_starting(tmp_path: Path, where: str) -> None:
    if where != "/proc/forbidden":
        (tmp_path / "file").write_text("")
        where = str(tmp_path / "file" / "out" if where == "under-a-file" else tmp_path / "file")
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("rtclab")), "demo", "--out", where],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"rtclab demo: cannot write to the output folder {where}: ")
    assert lines[0].endswith("pass --out a folder you can write to")
    assert "signaling server on" not in proc.stdout  # refused before anything started


def test_cli_demo_that_cannot_write_at_the_end_still_prints_the_summary(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("rtclab")), "demo", "--out", str(out),
         "--peers", "2", "--duration", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:
            seen.append(line)
            if "peer connections up" in line:
                break
        assert out.is_dir(), seen  # the check created it
        shutil.rmtree(out)  # the folder goes away mid-run and a file takes its place
        out.write_text("not a folder")
        rest, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stdout = "".join(seen) + rest
    assert proc.returncode == 1, err
    assert "Traceback" not in err, err
    assert "host/host" in stdout  # the summary table came first
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("rtclab demo: could not write samples.csv and events.csv ("), err
    assert "dashboard.html (" in lines[0] and str(out) in lines[0]


def test_summary_table_labels_each_column_by_direction() -> None:
    """Issue 17 item 12: ``alice -> bob`` showed what alice receives *from* bob under a
    plain "recv kbps": each traffic column now carries its direction."""
    row = dict.fromkeys(SUMMARY_COLUMNS, math.nan)
    row.update(peer="alice", remote="bob", path="host/host", send_kbps=300.0, recv_kbps=120.0)
    text = format_summary(pd.DataFrame([row], columns=SUMMARY_COLUMNS))
    header, _, line = text.splitlines()[:3]
    columns = [c for c in header.split("  ") if c.strip()]
    cells = [c for c in line.split("  ") if c.strip()]
    by_header = dict(zip([c.strip() for c in columns], [c.strip() for c in cells], strict=True))
    assert by_header["peer -> remote"] == "alice -> bob"
    assert by_header["-> kbps"] == "300" and by_header["<- kbps"] == "120"
    assert {"<- video fps", "<- loss %", "<- jitter ms"} <= set(by_header)
    assert "peer sends to remote" in text and "peer receives from remote" in text
