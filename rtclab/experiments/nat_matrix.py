"""Which NAT pairs connect, and how: every pair of presets x {STUN only, STUN + TURN}
(x firewall presets on the offerer's host, when given).

One scenario = two hosts behind the given NAT presets on a fresh emulated network, two data
channel peers, a short wait for the SCTP round-trip time. Failures are detected by the
peers' ``connect_timeout`` (a few seconds) instead of aioice's ~63 s. Scenarios run
concurrently inside a process, in parallel across local processes, or on a Dask cluster when
given a ``client``: each batch is a plain picklable function call returning rows.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from ..net.firewall import firewall as firewall_preset
from ..net.firewall import predict_paths
from ..net.nat import PRESETS, predict_direct
from ..net.netns import require_netns
from ._harness import (
    ExperimentResult,
    connect_pair,
    path_columns,
    run_scenarios,
    settled_sctp_rtt,
)
from .netns_runner import close_shared, run_netns_scenario

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = [
    "MATRIX_COLUMNS",
    "NatMatrix",
    "NatScenario",
    "nat_matrix",
    "nat_matrix_figure",
    "run_nat_scenario",
]

Backend = Literal["emulated", "netns"]
SERVERS = {False: "stun", True: "stun+turn"}

MATRIX_COLUMNS = [
    "a",
    "b",
    "servers",
    "backend",
    "firewall",
    "connected",
    "expected",
    "path",
    "local_candidate_type",
    "remote_candidate_type",
    "relay_protocol",
    "connect_ms",
    "rtt_ms",
    "error",
]


@dataclass(frozen=True)
class NatScenario:
    """Peer ``a`` (the offerer) behind preset ``a`` and ``firewall``, peer ``b`` behind
    ``b``; with ``turn``, TURN is offered over each of ``turn_transports``."""

    a: str
    b: str
    turn: bool
    backend: Backend = "emulated"
    seed: int = 0
    firewall: str | None = None
    turn_transports: tuple[str, ...] = ("udp",)

    @property
    def expected(self) -> bool:
        """RFC 4787's prediction: TURN works unless the firewall blocks every transport
        offered, else only what hole punching allows (and only if UDP gets out)."""
        tls_port = {"tls": 443} if self.backend == "netns" else None
        survive = predict_paths(self.firewall, tls_port)
        if self.turn and any(survive[f"relay-{t}"] for t in self.turn_transports):  # type: ignore[index]
            return True
        return survive["srflx"] and predict_direct(self.a, self.b)


def _path(local: Any, remote: Any) -> str | None:
    if not isinstance(local, str) or not isinstance(remote, str):
        return None
    return "relay" if "relay" in (local, remote) else "direct"


async def run_nat_scenario(
    scenario: NatScenario,
    *,
    signaling_url: str,
    connect_timeout: float = 3.0,
    settle_seconds: float = 0.3,
) -> dict[str, Any]:
    """One scenario on the emulated network -> one row (never raises for a failed connect)."""
    from ..net.emulated import Network
    from ..peer.peer import Peer

    if scenario.backend != "emulated":
        netns_row = {**_keys(scenario), "connected": False}
        netns_row.update(
            await run_netns_scenario(
                scenario.a,
                scenario.b,
                turn=scenario.turn,
                connect_timeout=connect_timeout,
                settle_seconds=settle_seconds,
                turn_transports=scenario.turn_transports,
                firewall=scenario.firewall,
            )
        )
        netns_row["path"] = _path(
            netns_row.get("local_candidate_type"), netns_row.get("remote_candidate_type")
        )
        return netns_row
    row: dict[str, Any] = {**_keys(scenario), "connected": False}
    room = f"nat-{scenario.a}-{scenario.b}-{scenario.turn}-{time.monotonic_ns()}"
    with Network(seed=scenario.seed) as net:
        turn = scenario.turn_transports if scenario.turn else False
        ice = net.ice_config(turn=turn, connect_timeout=connect_timeout)
        options: dict[str, Any] = {"room": room, "ice": ice, "video": False, "audio": False}
        host_a = net.host("a", scenario.a, firewall=scenario.firewall)
        offerer = Peer("a", signaling_url, network=host_a, **options)
        answerer = Peer("b", signaling_url, network=net.host("b", scenario.b), **options)
        try:
            began = time.monotonic()
            error = await connect_pair(answerer, offerer, timeout=connect_timeout + 1.0)
            row["connected"] = error is None
            if error is not None:
                row["error"] = error
            conn = offerer.connections.get("b")
            if row["connected"] and conn is not None:
                row["connect_ms"] = (
                    conn.connect_ms
                    if conn.connect_ms is not None
                    else (time.monotonic() - began) * 1000
                )
                path = path_columns(conn)
                for key in ("local_candidate_type", "remote_candidate_type", "relay_protocol"):
                    if key in path:
                        row[key] = path[key]
                row["rtt_ms"] = await settled_sctp_rtt(conn, began, settle_seconds)
        finally:
            await asyncio.gather(offerer.close(), answerer.close(), return_exceptions=True)
    row["path"] = _path(row.get("local_candidate_type"), row.get("remote_candidate_type"))
    return row


def _keys(scenario: NatScenario) -> dict[str, Any]:
    return {
        "a": scenario.a,
        "b": scenario.b,
        "servers": SERVERS[scenario.turn],
        "backend": scenario.backend,
        "firewall": scenario.firewall,
        "expected": scenario.expected,
    }


async def _run_many(
    scenarios: Sequence[NatScenario],
    options: dict[str, Any],
    on_row: Callable[[dict[str, Any]], object] | None = None,
) -> list[dict[str, Any]]:
    """Scenarios of one batch, ``concurrency`` at a time, on one signaling server."""
    from ..signaling.server import SignalingServer

    limit = asyncio.Semaphore(int(options.get("concurrency", 4)))
    async with SignalingServer(port=0) as server:
        assert server.url is not None

        async def one(scenario: NatScenario) -> dict[str, Any]:
            async with limit:
                try:
                    row = await run_nat_scenario(
                        scenario,
                        signaling_url=server.url,
                        connect_timeout=float(options.get("connect_timeout", 3.0)),
                        settle_seconds=float(options.get("settle_seconds", 0.3)),
                    )
                except Exception as exc:  # a broken scenario is a row, not a lost sweep
                    row = {
                        **_keys(scenario),
                        "connected": False,
                        "error": f"{type(exc).__name__}: {exc}",
                    }
            if on_row is not None:
                on_row(row)
            return row

        return list(await asyncio.gather(*(one(s) for s in scenarios)))


def run_batch(
    scenarios: Sequence[NatScenario | dict[str, Any]], options: dict[str, Any]
) -> list[dict[str, Any]]:
    """Run a batch in a fresh event loop (what a worker process or a Dask task calls);
    scenarios as :class:`NatScenario` or its fields in a dict, rows out."""
    chosen = [s if isinstance(s, NatScenario) else NatScenario(**s) for s in scenarios]
    return asyncio.run(_run_many(chosen, options))


@dataclass
class NatMatrix(ExperimentResult):
    """What :func:`nat_matrix` returns; unpacks as ``frame, figure``."""

    presets: tuple[str, ...] = ()

    def _make_figure(self) -> go.Figure:
        return nat_matrix_figure(self.frame, self.presets)

    @property
    def mismatches(self) -> pd.DataFrame:
        """Rows whose outcome differs from the RFC 4787 prediction."""
        rows: pd.DataFrame = self.frame[self.frame["connected"] != self.frame["expected"]]
        return rows

    def pivot(
        self, servers: str = "stun", backend: str | None = None, firewall: str | None = None
    ) -> pd.DataFrame:
        """a x b table of the selected path (``direct``/``relay``/``-`` for failed), for
        one firewall preset of ``a`` (``None``: none)."""
        rows = self.frame[self.frame["servers"] == servers]
        if backend is not None:
            rows = rows[rows["backend"] == backend]
        if "firewall" in rows:
            wall = rows["firewall"]
            rows = rows[wall.isna()] if firewall is None else rows[wall == firewall]
        cells = rows.assign(cell=rows["path"].where(rows["connected"], "-").fillna("?"))
        table = cells.pivot_table(index="a", columns="b", values="cell", aggfunc="first")
        out: pd.DataFrame = table.reindex(index=list(self.presets), columns=list(self.presets))
        return out


async def nat_matrix(
    presets: Sequence[str] | None = None,
    *,
    turn: Sequence[bool] = (False, True),
    backends: Sequence[Backend] = ("emulated",),
    firewalls: Sequence[str | None] = (None,),
    turn_transports: Sequence[str] = ("udp",),
    connect_timeout: float = 3.0,
    settle_seconds: float = 0.3,
    workers: int | None = None,
    concurrency: int = 4,
    client: Any = None,
    seed: int = 0,
    progress: bool = True,
) -> NatMatrix:
    """Every ordered pair of ``presets`` x ``turn`` x ``backends`` x ``firewalls`` -> rows
    and a heatmap.

    ``firewalls`` are presets of :data:`rtclab.net.firewall.FIREWALL_PRESETS` (or ``None``)
    put on the offerer's host; ``turn_transports`` the TURN transports offered (``udp``,
    ``tcp``, ``tls``: on 5349 emulated, on 443 in namespaces).

    ``workers`` local processes share the scenarios (default: one per CPU; ``0`` runs them
    in this event loop, e.g. on Binder); each runs ``concurrency`` scenarios at a time. With
    a Dask ``client`` the batches go to its cluster instead. A failed connection is a row
    with ``connected=False`` and the reason in ``error``, detected after ``connect_timeout``.
    """
    chosen = tuple(presets) if presets is not None else tuple(PRESETS)
    for name in chosen:
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
    for wall in firewalls:
        firewall_preset(wall)  # a clear error for an unknown name, before any run
    if "netns" in backends:
        require_netns()
    transports = tuple(turn_transports)
    scenarios = [
        NatScenario(a, b, t, backend, seed, wall, transports)
        for backend in backends
        for wall in firewalls
        for t in turn
        for a in chosen
        for b in chosen
    ]
    options = {
        "connect_timeout": connect_timeout,
        "settle_seconds": settle_seconds,
        "concurrency": concurrency,
    }
    began = time.monotonic()

    def label(row: dict[str, Any]) -> str:
        outcome = "ok" if row["connected"] else "failed"
        return f"{row['a']}<->{row['b']} {row['servers']}: {outcome}"

    async def here(
        items: list[NatScenario], done: Callable[[dict[str, Any]], None]
    ) -> list[dict[str, Any]]:
        try:
            return await _run_many(items, options, on_row=done)
        finally:
            if any(s.backend == "netns" for s in items):
                close_shared()

    # namespace scenarios run their peers as processes already: they stay in this loop
    local = [s for s in scenarios if s.backend == "netns"]
    elsewhere = [s for s in scenarios if s.backend != "netns"]
    run = functools.partial(
        run_scenarios, here=here, batch=functools.partial(run_batch, options=options),
        batch_size=concurrency, desc="NAT matrix", unit="scenario", postfix=label,
        progress=progress,
    )  # fmt: skip
    rows = await run(local, workers=0) if local else []
    if elsewhere:
        rows += await run(elsewhere, workers=workers, client=client)
    return NatMatrix(_frame(rows, chosen), presets=chosen, elapsed_s=time.monotonic() - began)


def _frame(rows: list[dict[str, Any]], order: Sequence[str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows).reindex(columns=MATRIX_COLUMNS)
    for column in ("a", "b"):
        frame[column] = pd.Categorical(frame[column], categories=list(order), ordered=True)
    frame["connected"] = frame["connected"].fillna(False).astype(bool)
    frame["expected"] = frame["expected"].astype(bool)
    frame["firewall"] = frame["firewall"].astype(object).where(frame["firewall"].notna(), None)
    for column in ("connect_ms", "rtt_ms"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    order_by = ["backend", "firewall", "servers", "a", "b"]
    out: pd.DataFrame = frame.sort_values(order_by, na_position="first").reset_index(drop=True)
    return out


def nat_matrix_figure(frame: pd.DataFrame, order: Sequence[str] | None = None) -> go.Figure:
    """Heatmaps a x b, one per (servers, backend): direct / relay / failed, connect time."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    names = list(order) if order is not None else list(dict.fromkeys(frame["a"].astype(str)))
    walls = frame["firewall"] if "firewall" in frame else pd.Series([None] * len(frame))
    walls = walls.astype(object).where(walls.notna(), None)
    panels = list(dict.fromkeys(zip(frame["servers"], frame["backend"], walls, strict=True)))
    fig = make_subplots(
        rows=1,
        cols=max(1, len(panels)),
        subplot_titles=[f"{s} ({b}{', ' + w if w else ''})" for s, b, w in panels],
        horizontal_spacing=0.12,
    )
    code = {"failed": 0, "relay": 1, "direct": 2}
    for col, (servers, backend, wall) in enumerate(panels, start=1):
        same_wall = walls.isna() if wall is None else walls == wall
        rows = frame[(frame["servers"] == servers) & (frame["backend"] == backend) & same_wall]
        z: list[list[float]] = []
        text: list[list[str]] = []
        for a in names:
            zr, tr = [], []
            for b in names:
                cell = rows[(rows["a"].astype(str) == a) & (rows["b"].astype(str) == b)]
                if cell.empty:
                    zr.append(math.nan)
                    tr.append("")
                    continue
                r = cell.iloc[0]
                kind = str(r["path"]) if r["connected"] else "failed"
                zr.append(code.get(kind, 1))
                label = "✗" if not r["connected"] else f"{kind}<br>{r['connect_ms']:.0f} ms"
                if bool(r["connected"]) != bool(r["expected"]):
                    label += "<br>(unexpected)"
                tr.append(label)
            z.append(zr)
            text.append(tr)
        fig.add_trace(
            go.Heatmap(
                z=z,
                x=names,
                y=names,
                text=text,
                texttemplate="%{text}",
                zmin=0,
                zmax=2,
                showscale=False,
                colorscale=[[0, "#d62728"], [0.5, "#ff7f0e"], [1, "#2ca02c"]],
                hovertemplate="a=%{y}<br>b=%{x}<br>%{text}<extra></extra>",
            ),
            row=1,
            col=col,
        )
        fig.update_xaxes(title_text="b (answerer)", row=1, col=col)
        fig.update_yaxes(
            title_text="a (offerer)" if col == 1 else None, autorange="reversed", row=1, col=col
        )
    fig.update_layout(
        title="NAT matrix: green direct, orange relay (TURN), red failed",
        height=480,
        width=max(520, 460 * len(panels)),
        margin={"t": 80},
    )
    return fig
