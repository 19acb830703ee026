"""What NAT binding timeouts and NAT reboots do to a call, per NAT type (emulated network).

Two scenarios per NAT preset and mapping lifetime, both peers behind their own NAT of that
preset, data channels only, STUN offered (and TURN where two such NATs need it):

- ``idle``: the peers' recovery loop is off, so nothing but ICE consent checks (RFC 7675,
  every 4-6 s in aioice) crosses the NATs. A mapping lifetime shorter than that interval
  lets the mappings expire between two checks: the next check gets a new external port that
  the other side does not know, and the link is dead. A longer lifetime is refreshed by
  every check. After ``idle_s`` each peer sends a chat line: ``survived`` is both arriving.
  ``broke_s`` is when a NAT first found a mapping in use gone (expired, or a packet dropped
  for want of one).
- ``reboot``: the peers' recovery loop is on (heartbeats every second), and after
  ``reboot_after_s`` the offerer's NAT loses every mapping. ``noticed_s`` is when a peer
  said ``lost``, ``recovered_s`` when traffic flowed again (the same link, or a rebuilt
  one), both counted from the reboot.

Times are from the event loop's clock; rows go into :class:`BindingTimeouts` ``frame``.
With ``backend="netns"`` (root) the idle scenario runs on kernel NAT instead: the routers'
conntrack UDP timeouts are the lifetime, the peers are processes, and only ``survived`` and
``path`` are measured (a reboot there would need conntrack flushing: emulated only).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from ..net.nat import nat_behavior, predict_direct
from ._harness import ExperimentResult, connect_pair, path_columns, progress_bar
from .nat_matrix import _path as pair_path
from .netns_runner import close_shared, run_netns_scenario

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from ..net.emulated import Network
    from ..peer.peer import Peer

__all__ = ["BINDING_COLUMNS", "BindingTimeouts", "binding_timeouts"]

BINDING_COLUMNS = [
    "nat",
    "lifetime_s",
    "scenario",
    "survived",
    "path",
    "broke_s",
    "noticed_s",
    "recovered_s",
    "error",
]


@dataclass
class BindingTimeouts(ExperimentResult):
    """What :func:`binding_timeouts` returns; unpacks as ``frame, figure``."""

    def _make_figure(self) -> go.Figure:
        return binding_timeouts_figure(self.frame)


class _Events:
    """Every peer event with its loop time, for "when did it break / come back"."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, str, str | None, str, Any]] = []

    def __call__(self, peer: str, remote: str | None, event: str, value: Any) -> None:
        self.seen.append((asyncio.get_running_loop().time(), peer, remote, event, value))

    def first(self, names: Sequence[str], after: float, peer: str | None = None) -> float | None:
        for t, who, _, event, _ in self.seen:
            if t >= after and event in names and (peer is None or who == peer):
                return t
        return None

    def chat_from(self, sender: str, after: float) -> bool:
        return any(
            t >= after and event == "chat" and remote == sender
            for t, _, remote, event, _ in self.seen
        )


async def _pair(
    net: Network, nat: str, lifetime_s: float, url: str, room: str, resilience: Any, events: _Events
) -> tuple[Peer, Peer, str | None]:
    from ..peer.peer import Peer

    # TURN only where it is needed: with a relay candidate aioice may settle on the relay
    ice = net.ice_config(turn=not predict_direct(nat, nat), connect_timeout=5.0)
    options: dict[str, Any] = {"room": room, "ice": ice, "video": False, "audio": False,
                               "resilience": resilience}  # fmt: skip
    a = Peer("a", url, network=net.host("a", nat, mapping_lifetime_s=lifetime_s), **options)
    b = Peer("b", url, network=net.host("b", nat, mapping_lifetime_s=lifetime_s), **options)
    for peer in (a, b):
        peer.add_listener(events)
    return a, b, await connect_pair(b, a, timeout=6.0, both=True)


def _mapping_losses(net: Network) -> int:
    """Mappings found expired plus inbound packets a NAT dropped (no mapping, or filtered)."""
    return net.counters["filtered"] + sum(nat.table.expired for nat in net.nats.values())


async def _idle(
    net: Network, nat: str, lifetime_s: float, url: str, room: str, idle_s: float
) -> dict[str, Any]:
    from ..peer.resilience import Resilience

    loop = asyncio.get_running_loop()
    events = _Events()
    a, b, error = await _pair(net, nat, lifetime_s, url, room, Resilience(enabled=False), events)
    row: dict[str, Any] = {"survived": False}
    try:
        if error is not None:
            return {**row, "error": error}
        row["path"] = _path(a)
        await asyncio.sleep(0.5)  # late checks of the pairs not chosen die down
        began, drops = loop.time(), _mapping_losses(net)
        while loop.time() - began < idle_s:
            await asyncio.sleep(0.05)
            if "broke_s" not in row and _mapping_losses(net) > drops:
                row["broke_s"] = round(loop.time() - began, 2)
        probe = loop.time()
        for peer in (a, b):
            with contextlib.suppress(ConnectionError):
                await peer.send_chat(f"still there? ({peer.name})")
        deadline = probe + 3.0
        while loop.time() < deadline:
            if events.chat_from("a", probe) and events.chat_from("b", probe):
                row["survived"] = True
                break
            await asyncio.sleep(0.05)
    finally:
        await asyncio.gather(a.close(), b.close(), return_exceptions=True)
    return row


async def _reboot(
    net: Network, nat: str, lifetime_s: float, url: str, room: str, reboot_after_s: float,
    recover_timeout: float,
) -> dict[str, Any]:  # fmt: skip
    from ..peer.resilience import Resilience

    loop = asyncio.get_running_loop()
    events = _Events()
    a, b, error = await _pair(net, nat, lifetime_s, url, room, Resilience(), events)
    row: dict[str, Any] = {"survived": False}
    try:
        if error is not None:
            return {**row, "error": error}
        row["path"] = _path(a)
        await asyncio.sleep(reboot_after_s)
        rebooted = loop.time()
        net.nats["a-nat"].table.flush()
        deadline = rebooted + recover_timeout
        while loop.time() < deadline:
            await asyncio.sleep(0.1)
            lost = events.first(["lost"], rebooted)
            if lost is None:
                continue
            row["noticed_s"] = round(lost - rebooted, 2)
            back = events.first(["recovered", "connected"], lost)
            if back is not None:
                row["recovered_s"] = round(back - rebooted, 2)
                break
        if "noticed_s" not in row:
            row["survived"] = True  # nobody lost anything: the reboot did not matter
        elif "recovered_s" not in row:
            row["error"] = f"not recovered within {recover_timeout:g}s of the reboot"
    finally:
        await asyncio.gather(a.close(), b.close(), return_exceptions=True)
    return row


async def _idle_in_namespaces(nat: str, lifetime_s: float, idle_s: float) -> dict[str, Any]:
    try:
        row = await run_netns_scenario(
            nat, nat, turn=not predict_direct(nat, nat), mapping_lifetime_s=lifetime_s,
            idle_s=idle_s, connect_timeout=5.0,
        )  # fmt: skip
    except Exception as exc:  # a broken scenario is a row
        return {"survived": False, "error": f"{type(exc).__name__}: {exc}"}
    path = pair_path(row.get("local_candidate_type"), row.get("remote_candidate_type"))
    out = {"survived": bool(row.get("survived")), "path": path}
    return out if row.get("connected") else {**out, "error": row.get("error")}


def _path(peer: Peer) -> str | None:
    conn = peer.connections.get("b")
    path = {} if conn is None else path_columns(conn)
    return pair_path(path.get("local_candidate_type"), path.get("remote_candidate_type"))


async def binding_timeouts(
    lifetimes_s: Sequence[float] = (2.0, 30.0),
    nats: Sequence[str] = ("full-cone", "port-restricted-cone", "symmetric"),
    *,
    idle: bool = True,
    reboot: bool = True,
    idle_s: float = 12.0,
    reboot_after_s: float = 2.0,
    recover_timeout: float = 20.0,
    signaling_url: str | None = None,
    seed: int = 0,
    progress: bool = True,
    backend: Literal["emulated", "netns"] = "emulated",
) -> BindingTimeouts:
    """Per NAT preset and mapping lifetime: does an idle call survive (``idle``), and how
    long a NAT reboot takes to notice and recover from (``reboot``). See the module
    docstring for what each column means. Scenarios run one at a time (timings matter)."""
    from ..net.emulated import Network
    from ..signaling.server import SignalingServer

    for name in nats:
        if nat_behavior(name) is None:
            raise ValueError("'open' has no NAT and no mappings: choose a NAT preset")
    if backend == "netns":
        if reboot:
            raise ValueError("a NAT reboot runs on the emulated network only: reboot=False")
        from ..net.netns import require_netns

        require_netns()
    scenarios = [s for s, on in (("idle", idle), ("reboot", reboot)) if on]
    began = time.monotonic()
    rows: list[dict[str, Any]] = []
    total = len(nats) * len(lifetimes_s) * len(scenarios)
    bar = progress_bar(total, "binding timeouts", "scenario", progress)
    async with contextlib.AsyncExitStack() as stack:
        if signaling_url is None:
            server = await stack.enter_async_context(SignalingServer(port=0))
            signaling_url = server.url
        assert signaling_url is not None
        stack.callback(bar.close)
        if backend == "netns":
            stack.callback(close_shared)
        for nat in nats:
            for lifetime in lifetimes_s:
                for scenario in scenarios:
                    room = f"binding-{nat}-{lifetime}-{scenario}-{time.monotonic_ns()}"
                    if backend == "netns":
                        row = await _idle_in_namespaces(nat, lifetime, idle_s)
                        rows.append({"nat": nat, "lifetime_s": float(lifetime),
                                     "scenario": scenario, **row})  # fmt: skip
                        bar.update(1)
                        continue
                    with Network(seed=seed) as net:
                        try:
                            if scenario == "idle":
                                row = await _idle(net, nat, lifetime, signaling_url, room, idle_s)
                            else:
                                row = await _reboot(net, nat, lifetime, signaling_url, room,
                                                    reboot_after_s, recover_timeout)  # fmt: skip
                        except Exception as exc:  # a broken scenario is a row
                            row = {"survived": False, "error": f"{type(exc).__name__}: {exc}"}
                    rows.append({"nat": nat, "lifetime_s": float(lifetime),
                                 "scenario": scenario, **row})  # fmt: skip
                    bar.set_postfix_str(f"{nat} {lifetime:g}s {scenario}")
                    bar.update(1)
    frame = pd.DataFrame(rows).reindex(columns=BINDING_COLUMNS)
    frame["survived"] = frame["survived"].fillna(False).astype(bool)
    for column in ("lifetime_s", "broke_s", "noticed_s", "recovered_s"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    return BindingTimeouts(frame, elapsed_s=time.monotonic() - began)


def binding_timeouts_figure(frame: pd.DataFrame) -> go.Figure:
    """Per NAT and lifetime: when an idle call broke, and how long a reboot took to notice
    and to recover from (bars; a missing bar is "never")."""
    import plotly.graph_objects as go

    fig = go.Figure()
    label = frame["nat"].astype(str) + " " + frame["lifetime_s"].map(lambda v: f"{v:g}s")
    for column, scenario, name in (
        ("broke_s", "idle", "idle: broke after"),
        ("noticed_s", "reboot", "reboot: noticed after"),
        ("recovered_s", "reboot", "reboot: recovered after"),
    ):
        rows = frame["scenario"] == scenario
        values = frame.loc[rows, column]
        fig.add_trace(
            go.Bar(
                x=label[rows],
                y=[0.0 if math.isnan(v) else v for v in values],
                name=name,
                hovertext=frame.loc[rows, "survived"].map(lambda s: "survived" if s else "broke"),
            )
        )
    fig.update_layout(barmode="group", title="NAT binding timeouts and reboots",
                      yaxis_title="seconds", height=420)  # fmt: skip
    return fig
