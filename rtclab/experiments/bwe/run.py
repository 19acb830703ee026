"""One RFC 8867 case with one estimator on a real network: peers, bottleneck, samples.

Topology (both backends): every forward sender sits on one host, ``left``, whose uplink is
the bottleneck (the case's capacity schedule and tail-drop queue, started at the case's
t=0); each flow's receiver sits on a host of its own whose link carries the flow's one-way
propagation delay both ways (so flows can differ in RTT, RFC 8867 5.5). A backward flow
(5.3) sends from the receiver side, whose uplink then carries the backward schedule: its
feedback and the forward flow's share congested links. Cross traffic (5.6, 5.7) shares the
left uplink's queue. A :class:`~rtclab.stats.StatsCollector` samples every peer; the
samples become the per-flow frame (:func:`flow_frame`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import pandas as pd

from ...net.link import Link
from .cases import BweCase, MediaFlow
from .metrics import FRAME_COLUMNS

#: The port of the long TCP flow of 5.6 between namespaces (``TcpBulk``).
TCP_PORT = 5201

__all__ = ["RunSpec", "flow_frame", "netns_unsupported", "run_emulated", "run_netns"]


@dataclass(frozen=True)
class RunSpec:
    """What one run needs; plain picklable data, so it travels to processes and Dask."""

    case: BweCase
    estimator: Any  # None, a "module:Class" string, or a factory
    label: str
    interval: float = 0.5
    video: tuple[int, int, float] = (640, 480, 30.0)  # each sender's width, height, fps
    seed: int = 0

    @property
    def video_options(self) -> dict[str, Any]:
        """The senders' video keywords, as ``Peer`` and ``rtclab peer`` take them."""
        width, height, fps = self.video
        return {"width": width, "height": height, "fps": fps}


def _peer_names(flow: MediaFlow) -> tuple[str, str]:
    return f"{flow.name}-send", f"{flow.name}-recv"


def _bottleneck(case: BweCase, direction: str, delay_ms: float = 0.0) -> Link:
    steps = case.schedule if direction == "forward" else case.backward
    assert steps is not None
    return Link(delay_ms=delay_ms, schedule=steps, queue_ms=case.queue_ms)


def _factory(estimator: Any) -> Any:
    if isinstance(estimator, str):
        from ...cc import load_estimator

        return load_estimator(estimator)
    return estimator


async def _at(t0: float, t: float) -> None:
    """Sleep until ``t`` seconds after the loop time ``t0``."""
    delay = t0 + t - asyncio.get_running_loop().time()
    if delay > 0:
        await asyncio.sleep(delay)


async def run_emulated(spec: RunSpec) -> pd.DataFrame:
    """``spec`` on a fresh emulated network in this loop -> the per-flow frame."""
    from ...net.cross import AimdFlow, CrossTraffic
    from ...net.emulated import Network
    from ...peer.peer import Peer
    from ...signaling.server import SignalingServer
    from ...stats.collector import StatsCollector
    from .traffic import ShortTransfers

    case = spec.case
    factory = _factory(spec.estimator)
    collector = StatsCollector(interval=spec.interval, window=None)
    peers: list[Peer] = []
    cross: list[CrossTraffic] = []
    cross_log: list[tuple[float, int]] = []
    async with contextlib.AsyncExitStack() as stack:
        server = await stack.enter_async_context(SignalingServer(port=0))
        net = stack.enter_context(Network(seed=spec.seed))
        assert server.url is not None
        url = server.url
        left = net.host("left")
        right = {
            f.name: net.host(f"right-{f.name}", link=Link(delay_ms=f.delay_ms)) for f in case.flows
        }
        ice = net.ice_config(stun=False, connect_timeout=10.0)
        video = spec.video_options
        common: dict[str, Any] = {"ice": ice, "audio": False, "data": False, "qoe": False}

        async def connect(flow: MediaFlow) -> Peer:
            """Both peers of ``flow`` connected and sampled; the sender."""
            from .._harness import connect_pair

            send_name, recv_name = _peer_names(flow)
            forward = flow.direction == "forward"
            near, far = (left, right[flow.name]) if forward else (right[flow.name], left)
            room = f"bwe-{flow.name}"
            sender = Peer(send_name, url, room=room, network=near, **video, **common)
            receiver = Peer(recv_name, url, room=room, network=far, video=False,
                            estimator=factory, **common)  # fmt: skip
            peers.extend((sender, receiver))
            error = await connect_pair(receiver, sender, timeout=15.0)
            if error is not None:
                raise ConnectionError(f"{flow.name} did not connect: {error}")
            collector.add(sender)
            collector.add(receiver)
            return sender

        async def flow_task(flow: MediaFlow, t0: float, sender: Peer | None) -> None:
            if sender is None:  # a flow that starts later connects when it starts
                await _at(t0, flow.start_s)
                sender = await connect(flow)
            for pause, resume in flow.pauses:
                await _at(t0, pause)
                sender.set_muted("video", True)
                await _at(t0, resume)
                sender.set_muted("video", False)

        async def sample_cross(t0: float) -> None:
            loop = asyncio.get_running_loop()
            while True:
                cross_log.append((loop.time() - t0, sum(c.flow.delivered_bytes for c in cross)))
                await asyncio.sleep(spec.interval)

        stack.push_async_callback(_close_all, peers)
        # flows that start with the case connect before it, so its t=0 is media, not ICE
        early = [f for f in case.flows if f.start_s <= 0]
        senders = dict(
            zip([f.name for f in early], await asyncio.gather(*map(connect, early)), strict=True)
        )
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        start_utc = datetime.now(timezone.utc)
        left.up.set_link(_bottleneck(case, "forward"), t0)
        if case.backward is not None:
            for flow in case.flows:
                d = flow.delay_ms
                right[flow.name].up.set_link(_bottleneck(case, "backward", d), t0)
        rtt_ms = 2 * max(f.delay_ms for f in case.flows)

        def stop_cross() -> None:
            for traffic in cross:
                traffic.stop()

        stack.callback(stop_cross)
        if case.long_tcp is not None:

            async def long_flow() -> None:
                assert case.long_tcp is not None
                await _at(t0, case.long_tcp[0])
                cross.append(CrossTraffic(AimdFlow(rtt_ms=rtt_ms), left.up))

            stack.push_async_callback(_cancel, asyncio.ensure_future(long_flow()))
        if case.short_tcp is not None:
            flows = ShortTransfers(spec=case.short_tcp, rtt_ms=rtt_ms, seed=spec.seed)
            cross.append(CrossTraffic(flows, left.up))
        sampler = asyncio.ensure_future(sample_cross(t0))
        stack.push_async_callback(_cancel, sampler)
        await collector.start()
        tasks = [asyncio.ensure_future(flow_task(f, t0, senders.get(f.name))) for f in case.flows]
        try:
            await _at(t0, case.duration_s)
            for task in tasks:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            await collector.poll()
        finally:
            for task in tasks:
                await _cancel(task)
            await collector.stop()
    return flow_frame(collector.samples, case, spec.label, start_utc, cross_log)


async def _close_all(peers: list[Any]) -> None:
    await asyncio.gather(*(p.close() for p in peers), return_exceptions=True)


async def _cancel(task: asyncio.Future[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


def netns_unsupported(case: BweCase) -> list[str]:
    """What of ``case`` the namespace backend cannot build yet (empty: it can)."""
    missing = []
    if case.backward is not None:
        missing.append("a backward bottleneck (5.3: NFQUEUE applies one link both ways)")
    if case.short_tcp is not None:
        missing.append("short TCP transfers (5.7: only one long TcpBulk transfer is wired in)")
    if any(f.pauses for f in case.flows):
        missing.append("pausing a flow (5.8: a peer process takes no commands)")
    return missing


async def run_netns(spec: RunSpec, net: Any) -> pd.DataFrame:
    """``spec`` between namespace hosts of ``net`` (a started NetnsNetwork), the bottleneck
    in userspace through NFQUEUE, the peers as ``rtclab peer`` processes, a long TCP flow
    as a real TCP bulk transfer (the kernel's CUBIC)."""
    from ...net.netns.bulk import TcpBulk
    from ...stats.collector import StatsCollector

    case = spec.case
    missing = netns_unsupported(case)
    if missing:
        raise ValueError(f"backend='netns' cannot run case {case.key} yet: {'; '.join(missing)}"
                         "; use backend='emulated'")  # fmt: skip
    estimator = _estimator_spec(spec.estimator)
    collector = StatsCollector(interval=spec.interval, window=None)
    tag = time.monotonic_ns() % 10**6
    # a long TCP flow (5.6) is real TCP between the namespaces; the NFQUEUE links take its
    # port, so it shares the bottleneck's queue with the media
    tcp_ports = (TCP_PORT,) if case.long_tcp is not None else ()
    first = Link(rate_kbps=case.schedule[0][1], queue_ms=case.queue_ms)
    left = _impaired(net, f"l{tag}", first, 0, tcp_ports)
    right = {f.name: _impaired(net, f"r{tag}{i}", Link(delay_ms=f.delay_ms), i + 1, tcp_ports)
             for i, f in enumerate(case.flows)}  # fmt: skip
    bulk: Any = None
    peers: list[Any] = []
    video = spec.video_options
    common: dict[str, Any] = {"lab": collector, "turn": False, "data": False,
                              "stats_interval": spec.interval}  # fmt: skip

    async def connect(flow: MediaFlow) -> None:
        send_name, recv_name = _peer_names(flow)
        room = f"bwe-{tag}-{flow.name}"
        receiver = await net.peer(right[flow.name], recv_name, room=room, video=False,
                                  estimator=estimator, **common)  # fmt: skip
        sender = await net.peer(left, send_name, room=room, **video, **common)
        peers.extend((receiver, sender))
        await sender.wait_connected(timeout=30.0)

    async def later(flow: MediaFlow, t0: float) -> None:
        await _at(t0, flow.start_s)
        await connect(flow)

    async def long_tcp(t0: float) -> None:
        nonlocal bulk
        assert case.long_tcp is not None
        start, end = case.long_tcp
        await _at(t0, start)
        far = right[case.flows[0].name]
        seconds = min(end, case.duration_s) - start
        bulk = await TcpBulk(left.namespace, far.namespace, far.address, TCP_PORT,
                             seconds).start()  # fmt: skip

    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Future[None]] = []
    try:
        # peer processes take seconds to start: flows of t=0 connect before the case starts
        await asyncio.gather(*(connect(f) for f in case.flows if f.start_s <= 0))
        t0 = loop.time()
        start_utc = datetime.now(timezone.utc)
        assert left.impairment is not None
        left.impairment.set_link(_bottleneck(case, "forward"))
        tasks = [asyncio.ensure_future(later(f, t0)) for f in case.flows if f.start_s > 0]
        if case.long_tcp is not None:
            tasks.append(asyncio.ensure_future(long_tcp(t0)))
        await _at(t0, case.duration_s)
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        for task in tasks:
            await _cancel(task)
        if bulk is not None:
            bulk.stop()
        await _close_all(peers)
        for host in (left, *right.values()):
            if host.impairment is not None:
                host.impairment.close()
            net.remove_host(host)
    return flow_frame(collector.samples, case, spec.label, start_utc, [])


def _impaired(net: Any, name: str, link: Link, seed: int, tcp_ports: tuple[int, ...]) -> Any:
    """An open namespace host of ``net`` behind ``link`` (NFQUEUE), TCP ``tcp_ports`` too."""
    from ...net.nfqueue import impair_namespace

    host = net.host(name, "open")
    try:
        host.impairment = impair_namespace(host.namespace, link, seed=seed, tcp_ports=tcp_ports)
    except BaseException:
        net.remove_host(host)
        raise
    return host


def _estimator_spec(estimator: Any) -> str | None:
    """How a peer process is told which estimator to run: ``"module:Class"``."""
    if estimator is None or isinstance(estimator, str):
        return estimator
    module = getattr(estimator, "__module__", None)
    name = getattr(estimator, "__qualname__", None)
    if module in (None, "__main__") or not isinstance(name, str) or "<" in name:
        raise ValueError(
            f"backend='netns' runs peers as processes: give the estimator as 'module:Class' "
            f"of an importable module, not {estimator!r}"
        )
    return f"{module}:{name}"


def _rows(samples: pd.DataFrame, peer: str, remote: str, direction: str) -> pd.DataFrame:
    if samples.empty:
        return samples
    pick = (
        (samples["peer"] == peer)
        & (samples["remote"] == remote)
        & (samples["kind"] == "video")
        & (samples["direction"] == direction)
    )
    picked: pd.DataFrame = samples[pick]
    return picked


def _since(rows: pd.DataFrame, start: datetime) -> pd.Series:
    times = pd.to_datetime(rows["t"], utc=True)
    seconds: pd.Series = (times - pd.Timestamp(start)).dt.total_seconds()
    return seconds


def _flows(case: BweCase) -> Iterator[tuple[MediaFlow, str, str]]:
    for flow in case.flows:
        yield (flow, *_peer_names(flow))


def flow_frame(
    samples: pd.DataFrame,
    case: BweCase,
    estimator: str,
    start: datetime,
    cross_log: list[tuple[float, int]],
) -> pd.DataFrame:
    """The collector's samples -> one row per flow per sample (:data:`FRAME_COLUMNS`):
    the sender's outbound video row (target, send rate, its uplink's capacity and queue,
    RTT) joined to the receiver's inbound one nearest in time (estimate, receive rate,
    loss). A capacity the link did not report comes from the case's schedule."""
    parts: list[pd.DataFrame] = []
    cross = pd.DataFrame(cross_log, columns=["t", "cross_bytes"])
    if not cross.empty:
        cross["cross_kbps"] = cross["cross_bytes"].diff() * 8 / 1000 / cross["t"].diff()
    for flow, sender, receiver in _flows(case):
        out = _rows(samples, sender, receiver, "outbound")
        got = _rows(samples, receiver, sender, "inbound")
        if out.empty:
            continue
        left = pd.DataFrame({
            "t": _since(out, start).to_numpy(),
            "capacity_kbps": pd.to_numeric(out["capacity_kbps"], errors="coerce").to_numpy(),
            "target_bitrate_kbps": out["target_bitrate_kbps"].to_numpy(dtype=float),
            "send_rate_kbps": out["bitrate_kbps"].to_numpy(dtype=float),
            "queue_delay_ms": pd.to_numeric(out["queue_delay_ms"], errors="coerce").to_numpy(),
            "rtt_ms": out["rtcp_rtt_ms"].to_numpy(dtype=float),
        }).sort_values("t")  # fmt: skip
        right = pd.DataFrame({
            "t": _since(got, start).to_numpy(),
            "estimate_kbps": got["estimate_kbps"].to_numpy(dtype=float),
            "receive_rate_kbps": got["bitrate_kbps"].to_numpy(dtype=float),
            "packets_lost": got["packets_lost"].to_numpy(dtype=float),
            "packets_received": got["packets_received"].to_numpy(dtype=float),
        }).sort_values("t")  # fmt: skip
        rows = pd.merge_asof(left, right, on="t", direction="nearest")
        lost = rows["packets_lost"].diff()
        expected = lost + rows["packets_received"].diff()
        rows["loss"] = (lost / expected).where(expected > 0)
        missing = rows["capacity_kbps"].isna()
        rows.loc[missing, "capacity_kbps"] = [
            case.capacity_at(t, flow.direction) for t in rows.loc[missing, "t"]
        ]
        if not cross.empty and flow.direction == "forward":
            rows = pd.merge_asof(rows, cross[["t", "cross_kbps"]], on="t", direction="nearest")
        rows["flow"] = flow.name
        rows["direction"] = flow.direction
        parts.append(rows)
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=FRAME_COLUMNS)
    frame["case"] = case.key
    frame["estimator"] = estimator
    frame = frame.reindex(columns=FRAME_COLUMNS)
    for column in FRAME_COLUMNS:
        if column not in ("case", "estimator", "flow", "direction"):
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    out_frame: pd.DataFrame = frame[frame["t"] >= 0].sort_values(["flow", "t"])
    return out_frame.reset_index(drop=True)  # type: ignore[no-any-return]
