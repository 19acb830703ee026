"""Load-test a signaling server: N aiortc peers in R rooms, spread over W worker processes.

Every peer joins at the same moment and meshes with the other members of its room; each
reports how long it took from its ``join`` to every connection up (``connected_ms``) and
to a first decoded video frame from every other member (``first_frame_ms``), or why it
failed. The call is then held for ``duration`` seconds (the received frame rate is
measured over that hold) while the server's ``/metrics`` is read, and everyone leaves.

Any server speaking the seed protocol works (``url``); without one a stand-alone
:class:`~rtclab.signaling.server.SignalingServer` is started on 127.0.0.1 for the run.
The peers gather on loopback only, so the server may be elsewhere but the peers are here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import secrets
import signal
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .._proc import die_with_parent
from ._harness import ExperimentResult, progress_bar

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = [
    "LOAD_COLUMNS",
    "LoadTest",
    "load_test",
    "metrics_url",
    "parse_prometheus",
    "plan_peers",
    "summarize_load",
]

LOAD_COLUMNS = [
    "peer",
    "room",
    "worker",
    "connected",
    "first_frame",
    "join_ms",
    "connected_ms",
    "first_frame_ms",
    "frames_per_second",
    "failure",
    "error",
]
TIMINGS = ("join_ms", "connected_ms", "first_frame_ms", "frames_per_second")
PERCENTILES = (50, 90, 99)
_START_TIMEOUT = 60.0  # a worker importing aiortc on a busy machine
_LEAVE_TIMEOUT = 30.0


def plan_peers(peers: int, rooms: int, workers: int, run: str = "load") -> list[dict[str, Any]]:
    """Who is where: peer ``i`` in room ``i % rooms`` on worker ``i % workers``, so every
    room's members sit in different processes when there are enough of them."""
    if rooms < 1 or workers < 1:
        raise ValueError("give at least one room and one worker")
    if peers < 2 * rooms:
        raise ValueError(
            f"{rooms} rooms need at least {2 * rooms} peers (2 in each), not {peers}: "
            "add peers or use fewer rooms"
        )
    names = [f"{run}-p{i}" for i in range(peers)]
    members: dict[int, list[str]] = {}
    for i, name in enumerate(names):
        members.setdefault(i % rooms, []).append(name)
    return [
        {
            "name": name,
            "room": f"{run}-r{i % rooms}",
            "worker": i % workers,
            "remotes": [m for m in members[i % rooms] if m != name],
        }
        for i, name in enumerate(names)
    ]


def summarize_load(frame: pd.DataFrame) -> pd.DataFrame:
    """Per timing column: how many peers have it, p50/p90/p99 and max (NaN when none)."""
    out = []
    for column in TIMINGS:
        series = frame[column] if column in frame else pd.Series(dtype="float64")
        values = pd.to_numeric(series, errors="coerce").dropna().to_numpy()
        row: dict[str, Any] = {"metric": column, "count": len(values)}
        for q in PERCENTILES:
            row[f"p{q}"] = float(np.percentile(values, q)) if len(values) else math.nan
        row["max"] = float(values.max()) if len(values) else math.nan
        out.append(row)
    summary: pd.DataFrame = pd.DataFrame(out).set_index("metric")
    return summary


def parse_prometheus(text: str) -> dict[str, float]:
    """Prometheus text format -> ``{"name{labels}": value}`` (comments and bad lines skipped)."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        with contextlib.suppress(ValueError):
            values[name.strip()] = float(value)
    return values


def metrics_url(signaling_url: str, path: str = "/metrics") -> str:
    """The HTTP address of a server's metrics beside its WebSocket URL (token kept)."""
    parts = urllib.parse.urlsplit(signaling_url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme)
    if scheme is None:
        raise ValueError(f"a signaling URL starts with ws:// or wss://, not {signaling_url!r}")
    query = urllib.parse.urlencode(
        [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k == "token"]
    )
    return urllib.parse.urlunsplit((scheme, parts.netloc, path, query, ""))


def _without_query(url: str) -> str:
    """``url`` without its query: a token stays out of printed reports."""
    return urllib.parse.urlsplit(url)._replace(query="").geturl()


def _fetch_metrics(url: str) -> dict[str, float]:
    """The server's counters, or empty when it serves none (not every server does)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return parse_prometheus(response.read().decode())
    except (OSError, ValueError, urllib.error.URLError):
        return {}


@dataclass
class LoadTest(ExperimentResult):
    """What :func:`load_test` returns: ``frame`` (one row per peer, :data:`LOAD_COLUMNS`),
    ``summary`` (percentiles per timing), ``failures`` (count per reason) and ``metrics``
    (the server's ``/metrics`` before and while everyone was in: ``before``, ``during``,
    ``change``)."""

    summary: pd.DataFrame = field(default_factory=pd.DataFrame)
    metrics: pd.DataFrame = field(default_factory=pd.DataFrame)
    setup: dict[str, Any] = field(default_factory=dict)

    @property
    def failures(self) -> pd.Series:
        """Failed peers per reason (``connect-timeout``, ``join-refused:room-full``, ...)."""
        counts: pd.Series = self.frame["failure"].dropna().value_counts()
        return counts

    def _make_figure(self) -> go.Figure:
        import plotly.graph_objects as go

        fig = go.Figure()
        for column in ("connected_ms", "first_frame_ms"):
            values = np.sort(pd.to_numeric(self.frame[column], errors="coerce").dropna())
            if len(values):
                share = np.arange(1, len(values) + 1) / len(self.frame)
                fig.add_trace(go.Scatter(x=values, y=share, mode="lines", name=column,
                                         line={"shape": "hv"}))  # fmt: skip
        fig.update_layout(title="Join -> connected / first frame (share of peers)",
                          xaxis_title="ms since join", yaxis_title="share of peers")  # fmt: skip
        return fig

    def report(self) -> str:
        """The text the CLI prints: setup, percentiles, failures, server counters."""
        s = self.setup
        ok = int(self.frame["connected"].sum())
        url = _without_query(str(s.get("url")))
        lines = [
            f"{s.get('peers')} peers in {s.get('rooms')} rooms on {s.get('workers')} workers "
            f"against {url}: {ok} connected, {len(self.frame) - ok} failed "
            f"({self.elapsed_s:.1f} s)",
            "",
            self.summary.round(1).to_string(na_rep="-"),
        ]
        if not self.failures.empty:
            lines += ["", "failures:"]
            lines += [f"  {reason}: {count}" for reason, count in self.failures.items()]
            first = self.frame.dropna(subset=["error"]).iloc[0]
            lines.append(f"  e.g. {first['peer']}: {first['error']}")
        if self.metrics.empty:
            lines += ["", f"server metrics: none at {_without_query(metrics_url(url))}"]
        else:
            lines += ["", "server /metrics (during = all peers in; change since before):",
                      self.metrics[["during", "change"]].to_string()]  # fmt: skip
        return "\n".join(lines)


async def load_test(
    peers: int = 6,
    rooms: int = 2,
    workers: int | None = None,
    *,
    url: str | None = None,
    duration: float = 5.0,
    video: bool = True,
    audio: bool = False,
    width: int = 160,
    height: int = 120,
    fps: float = 15.0,
    connect_timeout: float = 30.0,
    progress: bool = True,
) -> LoadTest:
    """Join ``peers`` peers in ``rooms`` rooms, from ``workers`` processes (``None``: one per
    CPU, at most one per peer), against ``url`` or a local server started for the run.

    ``video=False`` opens data channels instead (no ``first_frame_ms``). A peer that fails
    is a row with ``failure`` (a short reason) and ``error`` (the whole message), never an
    exception; an unreachable ``url`` raises :class:`ConnectionError` before any peer starts.
    """
    from ..signaling.client import SignalingClient, SignalingError
    from ..signaling.server import SignalingServer

    if workers is not None and workers < 1:
        raise ValueError("give at least one worker (None: one per CPU)")
    count = min(workers or os.cpu_count() or 1, peers)
    if duration < 0 or connect_timeout <= 0:
        raise ValueError("duration must be >= 0 and connect_timeout > 0 (seconds)")
    if url is not None:
        metrics_url(url)  # a clear error for a URL that is not ws:// or wss://
    plan = plan_peers(peers, rooms, count, run=f"load-{secrets.token_hex(3)}")
    began = time.monotonic()
    async with contextlib.AsyncExitStack() as stack:
        if url is None:
            server = await stack.enter_async_context(SignalingServer(port=0))
            assert server.url is not None
            url = server.url
        try:
            probe = await SignalingClient.connect(url)
        except (OSError, SignalingError, asyncio.TimeoutError) as exc:
            raise ConnectionError(f"cannot reach the signaling server at {url}: {exc}") from exc
        await probe.close()
        where = metrics_url(url)
        before = await asyncio.to_thread(_fetch_metrics, where)
        spec = {"url": url, "connect_timeout": connect_timeout, "video": video, "audio": audio,
                "width": width, "height": height, "fps": fps}  # fmt: skip
        run = _Run(plan, count, spec, progress)
        try:
            during = await run.go(duration, where)
        finally:
            await run.close()
    frame = _frame(plan, run.rows, run.rates)
    result = LoadTest(
        frame, summary=summarize_load(frame), metrics=_metrics_frame(before, during),
        elapsed_s=time.monotonic() - began,
        setup={"peers": peers, "rooms": rooms, "workers": count, "url": url,
               "duration": duration, "video": video, "audio": audio},
    )  # fmt: skip
    return result


class _Run:
    """The worker processes of one load test and what they report."""

    def __init__(
        self, plan: list[dict[str, Any]], workers: int, spec: dict[str, Any], progress: bool
    ) -> None:
        self.plan = plan
        self.workers = workers
        self.spec = spec
        self.rows: dict[str, dict[str, Any]] = {}
        self.rates: dict[str, float | None] = {}
        self.procs: list[asyncio.subprocess.Process] = []
        self.errors: list[deque[str]] = [deque(maxlen=20) for _ in range(workers)]
        self.bar = progress_bar(len(plan), "load", "peer", progress)
        self.timeout = float(spec["connect_timeout"]) * 2 + 30.0  # join, connect, first frame
        self._drains: set[asyncio.Task[None]] = set()

    async def _start(self, index: int) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "rtclab.experiments._load_worker", str(os.getpid()),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, limit=1 << 24,
            preexec_fn=die_with_parent(signal.SIGKILL),  # no workers left by a killed kernel
        )  # fmt: skip
        assert proc.stdin is not None and proc.stderr is not None
        task = asyncio.ensure_future(self._drain(proc.stderr, self.errors[index]))
        self._drains.add(task)
        task.add_done_callback(self._drains.discard)
        mine = [p for p in self.plan if p["worker"] == index]
        proc.stdin.write(json.dumps({**self.spec, "peers": mine}).encode() + b"\n")
        return proc

    @staticmethod
    async def _drain(stream: asyncio.StreamReader, tail: deque[str]) -> None:
        while line := await stream.readline():
            tail.append(line.decode(errors="replace").rstrip())

    async def _read(self, index: int, until: str) -> dict[str, Any] | None:
        """Lines of worker ``index`` until one holding ``until`` (rows and rates taken
        on the way); ``None`` if it ended first."""
        stdout = self.procs[index].stdout
        assert stdout is not None
        while line := await stdout.readline():
            try:
                message = json.loads(line)
            except ValueError:
                continue  # not ours (a library printing to stdout)
            if "row" in message:
                row = {**message["row"], "worker": index}
                self.rows[row["peer"]] = row
                self.bar.set_postfix_str(f"{row['peer']}: {row.get('failure') or 'ok'}")
                self.bar.update(1)
            if "rates" in message:
                self.rates.update(message["rates"])
            if until in message:
                return dict(message)
        return None

    def _lost(self, index: int) -> None:
        """Peers of a worker that ended early: failed, with its exit and last stderr line."""
        proc = self.procs[index]
        tail = self.errors[index][-1] if self.errors[index] else ""
        reason = f"worker {index} ended (code {proc.returncode}) before reporting {tail}".strip()
        for p in self.plan:
            if p["worker"] == index and p["name"] not in self.rows:
                self.rows[p["name"]] = {"peer": p["name"], "room": p["room"], "worker": index,
                                        "failure": "worker-exited", "error": reason}  # fmt: skip

    async def go(self, duration: float, where: str) -> dict[str, float]:
        """Start, wait until every worker is ready, ``go``, settle, hold, read the metrics,
        ``stop``; the metrics read while everyone was in."""
        self.procs = list(await asyncio.gather(*(self._start(i) for i in range(self.workers))))
        try:
            ready = await asyncio.wait_for(
                asyncio.gather(*(self._read(i, "ready") for i in range(self.workers))),
                _START_TIMEOUT,
            )
        except asyncio.TimeoutError:
            raise TimeoutError(f"the workers did not start within {_START_TIMEOUT:g} s") from None
        live = [i for i, message in enumerate(ready) if message is not None]
        for i in live:
            self._send(i, b"go\n")
        reads = [asyncio.ensure_future(self._read(i, "settled")) for i in live]
        await asyncio.wait(reads, timeout=self.timeout)  # a stalled worker: killed at close
        live = [i for i, read in zip(live, reads, strict=True)
                if read.done() and read.result() is not None]  # fmt: skip
        for read in reads:
            read.cancel()
        await asyncio.sleep(duration)
        during = await asyncio.to_thread(_fetch_metrics, where)
        for i in live:
            self._send(i, b"stop\n")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(self._read(i, "done") for i in live)), _LEAVE_TIMEOUT
            )
        return during

    def _send(self, index: int, line: bytes) -> None:
        stdin = self.procs[index].stdin
        if stdin is not None and not stdin.is_closing():
            stdin.write(line)

    async def close(self) -> None:
        """End every worker (stdin closed, then killed if it lingers); mark lost peers."""
        self.bar.close()
        for proc in self.procs:
            if proc.stdin is not None:
                proc.stdin.close()
        for index, proc in enumerate(self.procs):
            try:
                await asyncio.wait_for(proc.wait(), 5.0)
            except asyncio.TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
            self._lost(index)


def _frame(
    plan: list[dict[str, Any]], rows: dict[str, dict[str, Any]], rates: dict[str, float | None]
) -> pd.DataFrame:
    out = []
    for p in plan:
        row = {"peer": p["name"], "room": p["room"], "worker": p["worker"],
               **rows.get(p["name"], {}), "frames_per_second": rates.get(p["name"])}  # fmt: skip
        out.append(row)
    frame = pd.DataFrame(out).reindex(columns=LOAD_COLUMNS)
    for column in ("connected", "first_frame"):
        frame[column] = frame[column].fillna(False).astype(bool)
    for column in TIMINGS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    frame["worker"] = frame["worker"].astype("int64")
    return frame  # type: ignore[no-any-return]


def _metrics_frame(before: dict[str, float], during: dict[str, float]) -> pd.DataFrame:
    names = sorted(set(before) | set(during))
    frame = pd.DataFrame(
        {
            "before": [before.get(n, math.nan) for n in names],
            "during": [during.get(n, math.nan) for n in names],
        },
        index=pd.Index(names, name="metric"),
    )
    frame["change"] = frame["during"] - frame["before"].fillna(0.0)
    return frame  # type: ignore[no-any-return]
