"""How a stream degrades: a grid of link settings (delay, jitter, loss, rate) -> stats.

Each setting gets a fresh emulated network where the sender's access link carries the
impairment in both directions (so a one-way ``delay_ms`` of 50 shows up as ~100 ms RTT)
and the receiver's link is clean. One video stream (synthetic, VP8) runs for ``duration``
seconds while a :class:`~rtclab.stats.StatsCollector` samples both peers. Settings run in
the caller's loop (a Jupyter kernel's included), one after the other, or in parallel in
local processes or on a Dask cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from ..net.link import Link
from ._harness import ExperimentResult, connect_pair, run_scenarios

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = ["SUMMARY_COLUMNS", "ImpairmentSweep", "impairment_figure", "impairment_sweep"]

SUMMARY_COLUMNS = [
    "setting",
    "link_delay_ms",
    "link_jitter_ms",
    "link_loss",
    "link_burst",
    "link_rate_kbps",
    "connected",
    "rtt_ms",
    "jitter_ms",
    "loss_fraction",
    "link_loss_fraction",
    "link_packets_sent",
    "bitrate_kbps",
    "frames_per_second",
    "packets_sent",
    "error",
]

_Run = tuple[dict[str, Any], pd.DataFrame]  # one setting: its summary row and its samples


def _label(link: Link) -> str:
    parts = []
    if link.delay_ms:
        parts.append(f"{link.delay_ms:g}ms")
    if link.jitter_ms:
        parts.append(f"±{link.jitter_ms:g}ms")
    if link.loss:
        parts.append(f"{link.loss * 100:g}%" + (f"x{link.burst:g}" if link.burst > 1 else ""))
    if link.rate_kbps:
        parts.append(f"{link.rate_kbps:g}kbps/q{link.queue_bytes / 1000:g}kB")
    return " ".join(parts) or "clean"


@dataclass
class ImpairmentSweep(ExperimentResult):
    """What :func:`impairment_sweep` returns: a summary row per setting, every stats sample
    (with its ``setting``), and a figure. Unpacks as ``frame, samples, figure``."""

    samples: pd.DataFrame = field(default_factory=pd.DataFrame)

    def _make_figure(self) -> go.Figure:
        return impairment_figure(self.frame)

    def __iter__(self) -> Iterator[Any]:
        yield self.frame
        yield self.samples
        yield self.figure


def _grid(
    delay_ms: Sequence[float],
    jitter_ms: Sequence[float],
    loss: Sequence[float],
    rate_kbps: Sequence[float | None],
    burst: float,
    queue_bytes: int,
) -> list[Link]:
    return [
        Link(
            delay_ms=d,
            jitter_ms=j,
            loss=p,
            burst=burst if p else 1.0,
            rate_kbps=r,
            queue_bytes=queue_bytes,
        )
        for d, j, p, r in itertools.product(delay_ms, jitter_ms, loss, rate_kbps)
    ]


async def impairment_sweep(
    delay_ms: Sequence[float] = (0.0,),
    jitter_ms: Sequence[float] = (0.0,),
    loss: Sequence[float] = (0.0,),
    rate_kbps: Sequence[float | None] = (None,),
    *,
    links: Sequence[Link] | None = None,
    burst: float = 1.0,
    queue_bytes: int = 64_000,
    duration: float = 5.0,
    width: int = 320,
    height: int = 240,
    fps: float = 30.0,
    stats_interval: float = 0.5,
    seed: int = 0,
    signaling_url: str | None = None,
    backend: Literal["emulated", "netns"] = "emulated",
    workers: int | None = 0,
    client: Any = None,
    progress: bool = True,
) -> ImpairmentSweep:
    """Every combination of the given values (or the explicit ``links``) -> one run each.

    ``loss`` is a fraction (0.05 = 5 %), ``burst`` its mean burst length in packets.
    Summary columns (:data:`SUMMARY_COLUMNS`): configured ``link_*`` values; measured
    ``rtt_ms`` (median, from RTCP), ``jitter_ms`` (receiver's RTP jitter, median),
    ``loss_fraction`` (of the video packets, as the receiver reports them), the link's own
    ``link_loss_fraction`` (of ``link_packets_sent``), ``bitrate_kbps`` and
    ``frames_per_second`` received (medians).

    Settings run one after the other in this event loop (``workers=0``, the default: they
    do not compete for the CPU), in ``workers`` local processes (``None``: one per CPU) or
    on a Dask ``client``'s cluster, one setting per task, each with its own signaling
    server unless ``signaling_url`` is given; a process cannot share this loop's.

    ``backend="netns"`` (root only) runs each setting between two namespace hosts instead,
    the link applied in userspace through NFQUEUE, the peers as processes reporting their
    stats rows here: the same frames, from real sockets and kernel routing.
    """
    settings = (
        list(links)
        if links is not None
        else _grid(delay_ms, jitter_ms, loss, rate_kbps, burst, queue_bytes)
    )
    if not settings:
        raise ValueError("the grid is empty")
    if duration <= 0:
        raise ValueError("duration must be positive (seconds)")
    if backend == "netns" and (client is not None or workers != 0):
        raise ValueError("backend='netns' runs in this machine's namespaces: drop workers/client")
    began = time.monotonic()
    items = [_Setting(i, link, seed + i) for i, link in enumerate(settings)]
    options: dict[str, Any] = {
        "duration": duration, "stats_interval": stats_interval,
        "signaling_url": signaling_url, "backend": backend,
        "peer_options": {"width": width, "height": height, "fps": fps},
    }  # fmt: skip

    async def here(items: list[_Setting], done: Callable[[_Run], None]) -> list[_Run]:
        return await _run_settings(items, options, done)

    def label(run: _Run) -> str:
        row = run[0]
        return f"{row['setting']}: rtt {row.get('rtt_ms', math.nan):.0f} ms"

    runs = await run_scenarios(
        items, here=here, batch=functools.partial(run_settings, options=options),
        client=client, workers=workers, desc="impairment sweep", unit="setting",
        postfix=label, progress=progress,
    )  # fmt: skip
    summary = pd.DataFrame([row for row, _ in runs]).reindex(columns=SUMMARY_COLUMNS)
    for column in SUMMARY_COLUMNS[1:]:
        if column not in ("setting", "connected", "error"):
            summary[column] = pd.to_numeric(summary[column], errors="coerce").astype("float64")
    summary["connected"] = summary["connected"].fillna(False).astype(bool)
    nonempty = [frame for _, frame in runs if not frame.empty]
    all_samples = pd.concat(nonempty, ignore_index=True) if nonempty else pd.DataFrame()
    return ImpairmentSweep(summary, samples=all_samples, elapsed_s=time.monotonic() - began)


async def _run_settings(
    items: list[_Setting], options: dict[str, Any], done: Callable[[_Run], None] | None = None
) -> list[_Run]:
    """Settings one after the other on one signaling server (or namespace network)."""
    from ..signaling.server import SignalingServer
    from ..stats.collector import StatsCollector

    runs: list[_Run] = []
    interval = float(options["stats_interval"])
    net: Any = None
    async with contextlib.AsyncExitStack() as stack:
        url = options["signaling_url"]
        if options["backend"] == "netns":
            from ..net.netns import NetnsNetwork, require_netns

            require_netns()
            net = stack.enter_context(NetnsNetwork())
        elif url is None:
            server = await stack.enter_async_context(SignalingServer(port=0))
            url = server.url
        for setting in items:
            collector = StatsCollector(interval=interval, window=None)
            run = (
                await _one_netns_setting(net, setting, collector, options)
                if options["backend"] == "netns"
                else await _one_setting(setting, collector, options, url)
            )
            runs.append(run)
            if done is not None:
                done(run)
    return runs


def run_settings(items: list[_Setting], options: dict[str, Any]) -> list[_Run]:
    """Settings in a fresh event loop: what a worker process or a Dask task calls."""
    return asyncio.run(_run_settings(items, options))


def _setting_row(link: Link) -> dict[str, Any]:
    return {
        "setting": _label(link),
        "link_delay_ms": link.delay_ms,
        "link_jitter_ms": link.jitter_ms,
        "link_loss": link.loss,
        "link_burst": link.burst,
        "link_rate_kbps": link.rate_kbps,
        "connected": False,
    }


@dataclass(frozen=True)
class _Setting:
    """One point of the grid: picklable, so a process or a Dask worker can run it."""

    index: int
    link: Link
    seed: int

    @property
    def room(self) -> str:
        return f"impairment-{self.index}-{time.monotonic_ns()}"


async def _one_setting(
    setting: _Setting, collector: Any, options: dict[str, Any], signaling_url: str
) -> _Run:
    from ..net.emulated import Network
    from ..peer.peer import Peer

    row = _setting_row(setting.link)
    frame = pd.DataFrame()
    with Network(seed=setting.seed) as net:
        sender_host = net.host("sender", link=setting.link)
        ice = net.ice_config(stun=False, connect_timeout=10.0)
        common: dict[str, Any] = {"room": setting.room, "ice": ice, "audio": False, "data": False}
        sender = Peer(
            "sender", signaling_url, network=sender_host, **common, **options["peer_options"]
        )
        receiver = Peer(
            "receiver", signaling_url, network=net.host("receiver"), video=False, **common
        )
        try:
            error = await connect_pair(receiver, sender, timeout=ice.connect_timeout)
            row["connected"] = error is None
            if error is not None:
                row["error"] = error
            if row["connected"]:
                collector.add(sender)
                collector.add(receiver)
                await collector.start()
                frame = await _observe(row, collector, options["duration"])
                await collector.stop()
                row.update(_link_loss(sender_host.up.lost, sender_host.up.sent))
        finally:
            await asyncio.gather(sender.close(), receiver.close(), return_exceptions=True)
    return row, frame


async def _one_netns_setting(
    net: Any, setting: _Setting, collector: Any, options: dict[str, Any]
) -> _Run:
    """One setting between two open namespace hosts, the sender's link impaired."""
    row = _setting_row(setting.link)
    index = setting.index
    sender_host = net.host(f"s{index}", "open", link=setting.link, seed=setting.seed)
    receiver_host = net.host(f"r{index}", "open")
    common: dict[str, Any] = {
        "room": setting.room, "lab": collector, "turn": False, "data": False,
        "stats_interval": options["stats_interval"],
    }  # fmt: skip
    sender = await net.peer(sender_host, "sender", **common, **options["peer_options"])
    receiver = await net.peer(receiver_host, "receiver", video=False, **common)
    frame = pd.DataFrame()
    try:
        try:
            await sender.wait_connected(timeout=20.0)
            row["connected"] = True
        except (ConnectionError, TimeoutError) as exc:
            row["error"] = str(exc)
        if row["connected"]:
            frame = await _observe(row, collector, options["duration"])
    finally:
        await asyncio.gather(sender.close(), receiver.close(), return_exceptions=True)
        if sender_host.impairment is not None:
            up = sender_host.impairment.close()["up"]
            row.update(_link_loss(up["lost"], up["sent"]))
        net.remove_host(sender_host)  # each setting's hosts go with it
        net.remove_host(receiver_host)
    return row, frame


def _link_loss(lost: int, sent: int) -> dict[str, Any]:
    """What the link itself dropped (the configured loss as it came out)."""
    return {"link_loss_fraction": lost / sent if sent else math.nan, "link_packets_sent": sent}


async def _observe(row: dict[str, Any], collector: Any, duration: float) -> pd.DataFrame:
    """Once the first RTCP round trip is in, sample for ``duration`` seconds; the setting's
    samples (tagged with it) and its medians added to ``row``."""
    await _first_rtt(collector)
    await asyncio.sleep(duration)
    await collector.poll()
    frame: pd.DataFrame = collector.samples.assign(setting=row["setting"])
    row.update(_measure(frame))
    return frame


async def _first_rtt(collector: Any, timeout: float = 6.0) -> None:
    """Wait (bounded) for the sender's first RTCP round trip, so every setting's window
    has RTT samples: receiver reports come every ~1 s and need a sender report first, so
    with a long delay the first RTT can take 2-3 s to appear."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        for row in collector.recent_rows():
            rtt = row.get("rtcp_rtt_ms")
            if row.get("peer") == "sender" and rtt is not None and rtt == rtt:  # not NaN
                return
        await asyncio.sleep(0.1)


def _measure(samples: pd.DataFrame) -> dict[str, Any]:
    """The summary numbers of one run, read from the sender's and receiver's video rows."""
    video = samples[samples["kind"] == "video"]
    sent = video[(video["peer"] == "sender") & (video["direction"] == "outbound")]
    got = video[(video["peer"] == "receiver") & (video["direction"] == "inbound")]

    def median(frame: pd.DataFrame, column: str) -> float:
        values = pd.to_numeric(frame[column], errors="coerce").dropna()
        return float(values.median()) if len(values) else math.nan

    out: dict[str, Any] = {
        "rtt_ms": median(sent, "rtcp_rtt_ms"),
        "jitter_ms": median(got, "jitter_ms"),
        "bitrate_kbps": median(got, "bitrate_kbps"),
        "frames_per_second": median(got, "frames_per_second"),
    }
    # the receiver's cumulative counts, as the sender learns them from RTCP receiver reports
    lost = pd.to_numeric(sent["remote_packets_lost"], errors="coerce").dropna()
    received = pd.to_numeric(sent["remote_packets_received"], errors="coerce").dropna()
    packets = pd.to_numeric(sent["packets_sent"], errors="coerce").dropna()
    if len(lost) and len(received) and lost.iloc[-1] + received.iloc[-1] > 0:
        out["loss_fraction"] = float(lost.iloc[-1] / (lost.iloc[-1] + received.iloc[-1]))
    out["packets_sent"] = float(packets.iloc[-1]) if len(packets) else math.nan
    return out


def impairment_figure(frame: pd.DataFrame) -> go.Figure:
    """Measured RTT, jitter, loss and received bitrate/fps per setting."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    panels = [
        ("rtt_ms", "RTT (ms)"),
        ("jitter_ms", "Jitter at the receiver (ms)"),
        ("loss_fraction", "Video packets lost (fraction)"),
        ("bitrate_kbps", "Bitrate received (kbps)"),
    ]
    fig = make_subplots(rows=2, cols=2, subplot_titles=[t for _, t in panels])
    x = frame["setting"].astype(str)
    for i, (column, _) in enumerate(panels):
        fig.add_trace(
            go.Bar(
                x=x, y=frame[column], name=column, showlegend=False, marker={"color": "#1f77b4"}
            ),
            row=i // 2 + 1,
            col=i % 2 + 1,
        )
    fig.update_layout(title="Impairment sweep (one run per link setting)", height=600)
    return fig
