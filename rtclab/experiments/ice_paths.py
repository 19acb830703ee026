"""Compare ICE paths: the same pair of peers under several ICE configurations, N times each.

Each scenario is an ICE transport policy (``all``/``relay``), a set of TURN transports
(udp/tcp/tls) and whether a STUN server is offered. One run = two fresh peers in a fresh room
on a shared signaling server (and one real coturn on loopback when a scenario needs it),
``media_seconds`` of synthetic media, then one row: did it connect, how fast, which pair
was selected, RTT and bitrate. Runs are sequential so they do not compete for the CPU,
unless spread over local processes or a Dask cluster (``workers``, ``client``).

With ``firewall=`` (``"udp-blocked"``, ``"tcp-443-only"``) the runs move to Linux namespaces
(root): the offerer's host sits behind that firewall (and the NAT ``nat``), the answerer on
the public side, both peers are processes and coturn serves TURN over UDP/TCP on 3478 and TLS
on 443; ``expected`` says whether the scenario should connect by the firewall's definition
(:func:`rtclab.net.firewall.predict_paths`), ``connected`` whether it did.

The result holds a DataFrame (:data:`RESULT_COLUMNS`), a plotly figure and CSV export.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..ice.config import LOOPBACK, IceConfig, IceTransportPolicy
from ..net.firewall import IcePath, predict_paths
from ._harness import ExperimentResult, connect_pair, path_columns, run_scenarios

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from ..ice.coturn import Coturn, TurnTransport
    from ..peer.peer import Peer

__all__ = [
    "DEFAULT_SCENARIOS",
    "RESULT_COLUMNS",
    "IcePathComparison",
    "Scenario",
    "compare_ice_paths",
    "ice_paths_figure",
]

RESULT_COLUMNS = [
    "scenario",
    "repetition",
    "firewall",
    "expected",
    "connected",
    "connect_ms",
    "local_candidate_type",
    "remote_candidate_type",
    "protocol",
    "relay_protocol",
    "rtt_ms",
    "bitrate_kbps",
    "gathering_ms",
    "local_candidates",
    "turn_url",
    "error",
]


@dataclass(frozen=True)
class Scenario:
    """One ICE configuration to try. ``turn`` lists TURN transports in the order offered."""

    name: str
    policy: IceTransportPolicy = "all"
    turn: tuple[TurnTransport, ...] = ()
    stun: bool = False
    description: str = ""

    @property
    def needs_coturn(self) -> bool:
        return bool(self.turn) or self.stun

    @property
    def paths(self) -> set[IcePath]:
        """The ICE paths this scenario may take (any one of them is enough)."""
        paths: set[IcePath] = set()
        if self.policy != "relay":
            paths.add("host")
            if self.stun:
                paths.add("srflx")
        for transport in self.turn:
            paths.add(f"relay-{transport}")  # type: ignore[arg-type]
        return paths

    def expected(self, firewall: str | None, turn_ports: dict[str, int] | None = None) -> bool:
        """Should it connect behind ``firewall``? (From the definitions, not a run.)"""
        survive = predict_paths(firewall, turn_ports)
        return any(survive[path] for path in self.paths)

    def ice_config(
        self,
        coturn: Coturn | None,
        *,
        connect_timeout: float,
        interfaces: tuple[str, ...] | None = LOOPBACK,
    ) -> IceConfig:
        """The :class:`IceConfig` for this scenario on ``coturn`` (none needed without servers)."""
        if not self.needs_coturn:
            return IceConfig(
                ice_transport_policy=self.policy,
                interfaces=interfaces,
                connect_timeout=connect_timeout,
            )
        if coturn is None:
            raise ValueError(f"scenario {self.name!r} needs a coturn server")
        servers = coturn.ice_servers(self.turn, stun=self.stun) if self.turn else ()
        if not self.turn and self.stun:
            from ..ice.config import IceServer

            servers = (IceServer(coturn.stun_url),)
        return IceConfig(
            ice_servers=servers,
            ice_transport_policy=self.policy,
            interfaces=interfaces,
            connect_timeout=connect_timeout,
            tls_ca_file=str(coturn.ca_file) if coturn.ca_file else None,
        )


#: Policy all vs relay; TURN over udp/tcp/tls; with and without STUN.
DEFAULT_SCENARIOS: tuple[Scenario, ...] = (
    Scenario("host", "all", (), False, "policy all, no servers: host candidates only"),
    Scenario("all+stun", "all", (), True, "policy all with STUN: srflx (= host on loopback)"),
    Scenario("all+turn/udp", "all", ("udp",), True, "policy all with STUN and TURN/UDP"),
    Scenario("relay/udp", "relay", ("udp",), False, "relay only, TURN over UDP"),
    Scenario("relay/tcp", "relay", ("tcp",), False, "relay only, TURN over TCP"),
    Scenario("relay/tls", "relay", ("tls",), False, "relay only, TURN over TLS"),
)


@dataclass
class IcePathComparison(ExperimentResult):
    """What :func:`compare_ice_paths` returns: ``frame``, ``figure``, CSV export.

    Unpacks as ``frame, figure = await compare_ice_paths(...)``.
    """

    scenarios: tuple[Scenario, ...] = ()

    def _make_figure(self) -> go.Figure:
        return ice_paths_figure(self.frame, [s.name for s in self.scenarios])

    def summary(self) -> pd.DataFrame:
        """Per scenario: runs, success rate, median connect/RTT/bitrate, the usual path."""
        return summarize(self.frame, [s.name for s in self.scenarios])


# --- runs ----------------------------------------------------------------------------------


async def compare_ice_paths(
    scenarios: Sequence[Scenario] | None = None,
    repetitions: int = 3,
    *,
    media_seconds: float = 2.0,
    connect_timeout: float = 10.0,
    coturn: Coturn | None = None,
    signaling_url: str | None = None,
    interfaces: tuple[str, ...] | None = LOOPBACK,
    video: bool = True,
    audio: bool = False,
    width: int = 160,
    height: int = 120,
    stats_interval: float = 0.5,
    progress: bool = True,
    csv: str | Path | None = None,
    on_run: Callable[[dict[str, Any]], object] | None = None,
    firewall: str | None = None,
    nat: str = "open",
    workers: int | None = 0,
    client: Any = None,
) -> IcePathComparison:
    """Run every scenario ``repetitions`` times; one result row per run.

    ``firewall`` (a preset of :data:`rtclab.net.firewall.FIREWALL_PRESETS`) runs them in
    Linux namespaces instead (root), the offerer behind it and behind ``nat``; see the
    module docstring.

    ``coturn`` is reused when given (e.g. ``lab.coturn``), else one is started on loopback
    if a scenario needs STUN/TURN and stopped at the end. ``signaling_url`` likewise reuses
    a running server (``lab.url``). A failed run is a row with ``connected=False`` and the
    peer's named ``error``, never an exception: comparing failures is part of the point.

    Runs go one after the other in this event loop (``workers=0``, the default), or one
    repetition of every scenario per task in ``workers`` local processes (``None``: one per
    CPU) or on a Dask ``client``'s cluster, each task with its own coturn and signaling
    server (unless ``signaling_url`` is given): faster, but parallel runs share the CPU.
    """
    chosen = tuple(scenarios) if scenarios is not None else DEFAULT_SCENARIOS
    if not chosen:
        raise ValueError("give at least one scenario")
    if len({s.name for s in chosen}) != len(chosen):
        raise ValueError("scenario names must be unique")
    if repetitions < 1:
        raise ValueError("repetitions must be >= 1")
    if firewall is not None and (client is not None or workers != 0):
        raise ValueError("firewall= runs in this machine's namespaces: drop workers/client")
    began = time.monotonic()
    # interleaved: drift affects every scenario alike
    runs = [
        (scenario, repetition, repetition * len(chosen) + i + 1)
        for repetition in range(repetitions)
        for i, scenario in enumerate(chosen)
    ]
    options: dict[str, Any] = {
        "signaling_url": signaling_url, "stats_interval": stats_interval,
        "connect_timeout": connect_timeout, "media_seconds": media_seconds,
        "interfaces": interfaces,
        "peer_options": {"video": video, "audio": audio, "width": width, "height": height},
    }  # fmt: skip

    async def here(
        items: list[_Run], done: Callable[[dict[str, Any]], None]
    ) -> list[dict[str, Any]]:
        if firewall is None:
            return await _run_batch(items, options, coturn, done)
        async with contextlib.AsyncExitStack() as stack:
            run_one = await _namespace_runs(stack, firewall, nat, connect_timeout, media_seconds)
            rows = []
            for scenario, repetition, run in items:
                rows.append(await run_one(scenario, repetition, run))
                done(rows[-1])
            return rows

    def finished(row: dict[str, Any]) -> str:
        if on_run is not None:
            on_run(row)
        ok = "ok" if row["connected"] else "FAILED"
        return f"{row['scenario']} #{row['repetition']} {ok}"

    rows = await run_scenarios(
        runs, here=here, batch=functools.partial(run_batch, options=options),
        batch_size=len(chosen), client=client, workers=workers, desc="ICE paths", unit="run",
        postfix=finished, progress=progress,
    )  # fmt: skip
    frame = _frame(rows, [s.name for s in chosen])
    result = IcePathComparison(frame, scenarios=chosen, elapsed_s=time.monotonic() - began)
    if csv is not None:
        result.to_csv(csv)
    return result


_Run = tuple[Scenario, int, int]  # scenario, repetition (from 0), run number (from 1)


async def _run_batch(
    runs: list[_Run],
    options: dict[str, Any],
    coturn: Coturn | None = None,
    done: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Runs one after the other on one signaling server and coturn (each started here
    unless given), sampled by one collector."""
    from ..signaling.server import SignalingServer
    from ..stats.collector import StatsCollector

    rows: list[dict[str, Any]] = []
    async with contextlib.AsyncExitStack() as stack:
        if coturn is None and any(scenario.needs_coturn for scenario, _, _ in runs):
            from ..ice.coturn import Coturn

            coturn = await stack.enter_async_context(Coturn())
        url = options["signaling_url"]
        if url is None:
            server = await stack.enter_async_context(SignalingServer(port=0))
            url = server.url
        collector = StatsCollector(interval=options["stats_interval"], window=None)
        await collector.start()
        stack.push_async_callback(collector.stop)
        for scenario, repetition, run in runs:
            row = await _one_run(
                scenario, repetition, run, coturn=coturn, signaling_url=url,
                collector=collector, connect_timeout=options["connect_timeout"],
                media_seconds=options["media_seconds"], interfaces=options["interfaces"],
                peer_options=options["peer_options"],
            )  # fmt: skip
            rows.append(row)
            if done is not None:
                done(row)
    return rows


def run_batch(runs: list[_Run], options: dict[str, Any]) -> list[dict[str, Any]]:
    """Runs in a fresh event loop, with their own coturn: what a process or Dask task calls."""
    return asyncio.run(_run_batch(runs, options))


async def _one_run(
    scenario: Scenario,
    repetition: int,
    run: int,
    *,
    coturn: Coturn | None,
    signaling_url: str,
    collector: Any,
    connect_timeout: float,
    media_seconds: float,
    interfaces: tuple[str, ...] | None,
    peer_options: dict[str, Any],
) -> dict[str, Any]:
    from ..ice.inspect import local_candidates
    from ..peer.peer import Peer

    ice = scenario.ice_config(coturn, connect_timeout=connect_timeout, interfaces=interfaces)
    room = f"ice-paths-{run}-{time.monotonic_ns()}"
    answerer = Peer(f"answerer-{run}", signaling_url, room=room, ice=ice, **peer_options)
    offerer = Peer(f"offerer-{run}", signaling_url, room=room, ice=ice, **peer_options)
    row: dict[str, Any] = {"scenario": scenario.name, "repetition": repetition + 1,
                           "expected": scenario.expected(None)}  # fmt: skip
    peers: list[Peer] = [answerer, offerer]
    for peer in peers:
        peer.add_listener(collector.record_event)
    try:
        error = await connect_pair(answerer, offerer, timeout=connect_timeout + 1.0, both=True)
        if error is not None:
            row["error"] = error
        conn = offerer.connections.get(answerer.name)
        if conn is not None:
            row["connected"] = conn.connected_at is not None and conn.failure_reason is None
            row["connect_ms"] = conn.connect_ms
            row["gathering_ms"] = conn.gathering.elapsed_ms(conn.gathering.finished)
            row["local_candidates"] = len(local_candidates(conn.pc))
            row["turn_url"] = conn.gathering.turn_url
            if conn.failure_reason:
                row["error"] = conn.failure_reason
        if row.get("connected"):
            collector.add(offerer)
            await asyncio.sleep(media_seconds)
            await collector.poll()
            collector.remove(offerer)
            row.update(_path_and_rates(collector.samples, offerer.name, answerer.name))
            if conn is not None and row.get("local_candidate_type") is None:
                row.update(path_columns(conn))
    finally:
        for peer in peers:
            collector.remove(peer)
        await asyncio.gather(*(p.close() for p in peers), return_exceptions=True)
        collector.clear()
    row.setdefault("connected", False)
    return row


async def _namespace_runs(
    stack: contextlib.AsyncExitStack,
    firewall: str,
    nat: str,
    connect_timeout: float,
    settle_seconds: float,
) -> Callable[[Scenario, int, int], Awaitable[dict[str, Any]]]:
    """A run of :func:`compare_ice_paths` with the offerer behind ``firewall`` (and ``nat``),
    in namespaces: data channels only, the peers are processes reporting one row each."""
    from ..net.firewall import firewall as firewall_preset
    from ..net.netns import TURN_TLS_PORT, require_netns
    from .netns_runner import close_shared, run_netns_scenario

    firewall_preset(firewall)  # a clear error for an unknown name, before any namespace
    require_netns()
    stack.callback(close_shared)

    async def run_one(scenario: Scenario, repetition: int, run: int) -> dict[str, Any]:
        row: dict[str, Any] = {
            "scenario": scenario.name,
            "repetition": repetition + 1,
            "firewall": firewall,
            "expected": scenario.expected(firewall, {"tls": TURN_TLS_PORT}),
        }
        row.update(
            await run_netns_scenario(
                nat, "open", turn=bool(scenario.turn), turn_transports=scenario.turn,
                stun=scenario.stun, policy=scenario.policy, firewall=firewall,
                connect_timeout=connect_timeout, settle_seconds=settle_seconds,
            )
        )  # fmt: skip
        return row

    return run_one


def _path_and_rates(samples: pd.DataFrame, peer: str, remote: str) -> dict[str, Any]:
    """Selected path (last sample), median RTT (RTCP with media, else SCTP) and median sent
    bitrate of one run."""
    if samples.empty:
        return {}
    mine = samples[(samples["peer"] == peer) & (samples["remote"] == remote)]
    if mine.empty:
        return {}
    out: dict[str, Any] = {}
    for column in ("local_candidate_type", "remote_candidate_type", "protocol", "relay_protocol"):
        values = mine[column].dropna()
        out[column] = values.iloc[-1] if len(values) else None
    # the media path's RTCP round trip when media flowed, else the data channel's SCTP one
    rtt = pd.to_numeric(mine["rtcp_rtt_ms"], errors="coerce").dropna()
    if rtt.empty:
        rtt = pd.to_numeric(mine["sctp_rtt_ms"], errors="coerce").dropna()
    out["rtt_ms"] = float(rtt.median()) if len(rtt) else math.nan
    sent = mine[(mine["direction"] == "outbound") & mine["kind"].isin(["audio", "video", "data"])]
    per_kind = [
        float(pd.to_numeric(group["bitrate_kbps"], errors="coerce").dropna().median())
        for _, group in sent.groupby("kind")
        if pd.to_numeric(group["bitrate_kbps"], errors="coerce").notna().any()
    ]
    out["bitrate_kbps"] = float(sum(per_kind)) if per_kind else math.nan
    return out


def _frame(rows: list[dict[str, Any]], order: Sequence[str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows).reindex(columns=RESULT_COLUMNS)
    frame["scenario"] = pd.Categorical(frame["scenario"], categories=list(order), ordered=True)
    frame["repetition"] = frame["repetition"].astype("int64")
    frame["connected"] = frame["connected"].fillna(False).astype(bool)
    frame["expected"] = frame["expected"].fillna(True).astype(bool)
    for column in ("connect_ms", "rtt_ms", "bitrate_kbps", "gathering_ms"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    frame["local_candidates"] = pd.to_numeric(frame["local_candidates"]).astype("Int64")
    return frame  # type: ignore[no-any-return]


def summarize(frame: pd.DataFrame, order: Sequence[str] | None = None) -> pd.DataFrame:
    """Per scenario: runs, connected share, medians, and the most common selected path."""
    rows = []
    names = list(order) if order is not None else list(dict.fromkeys(frame["scenario"]))
    for name in names:
        runs = frame[frame["scenario"] == name]
        if runs.empty:
            continue
        ok = runs[runs["connected"]]
        paths = _path_labels(ok)
        rows.append(
            {
                "scenario": name,
                "runs": len(runs),
                "connected_pct": 100.0 * len(ok) / len(runs),
                "connect_ms": float(ok["connect_ms"].median()) if len(ok) else math.nan,
                "rtt_ms": float(ok["rtt_ms"].median()) if len(ok) else math.nan,
                "bitrate_kbps": float(ok["bitrate_kbps"].median()) if len(ok) else math.nan,
                "path": paths.mode().iloc[0] if len(paths) else None,
            }
        )
    summary: pd.DataFrame = pd.DataFrame(rows)
    return summary


def _path_labels(runs: pd.DataFrame) -> pd.Series:
    """``relay/relay udp via tls``: the selected pair of each run, as one readable string."""
    via = runs["relay_protocol"].map(lambda v: f" via {v}" if isinstance(v, str) else "")
    return (
        runs["local_candidate_type"].fillna("?").astype(str)
        + "/"
        + runs["remote_candidate_type"].fillna("?").astype(str)
        + " "
        + runs["protocol"].fillna("?").astype(str)
        + via
    )


def ice_paths_figure(frame: pd.DataFrame, order: Sequence[str] | None = None) -> go.Figure:
    """Connect time, RTT and bitrate per scenario (one point per run, failures marked)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    names = list(order) if order is not None else list(dict.fromkeys(frame["scenario"]))
    panels = [("connect_ms", "Connect time (ms)"), ("rtt_ms", "RTT (ms)"),
              ("bitrate_kbps", "Bitrate sent (kbps)")]  # fmt: skip
    fig = make_subplots(rows=1, cols=3, subplot_titles=[title for _, title in panels])
    for col, (column, _) in enumerate(panels, start=1):
        ok = frame[frame["connected"]]
        fig.add_trace(
            go.Box(
                x=ok["scenario"].astype(str),
                y=ok[column],
                boxpoints="all",
                jitter=0.3,
                pointpos=0,
                name=column,
                marker={"color": "#1f77b4"},
                showlegend=False,
                hovertext=_path_labels(ok),
            ),
            row=1,
            col=col,
        )
        failed = frame[~frame["connected"]]
        if col == 1 and not failed.empty:
            fig.add_trace(
                go.Scatter(
                    x=failed["scenario"].astype(str),
                    y=[0.0] * len(failed),
                    mode="markers",
                    marker={"symbol": "x", "color": "#d62728", "size": 10},
                    name="failed",
                    hovertext=failed["error"].astype(str),
                ),
                row=1,
                col=1,
            )
        fig.update_xaxes(categoryorder="array", categoryarray=names, row=1, col=col)
    fig.update_layout(title="ICE paths compared (one point per run)", height=420, margin={"t": 70})
    return fig
