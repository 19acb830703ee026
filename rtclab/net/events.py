"""Network events on a schedule: a link goes down and comes back, a link changes, a NAT
reboots (its mappings are gone), a host moves to a new address (a handover).

Each event is plain data (:class:`NetworkEvent`); :func:`apply_event` carries one out on an
emulated :class:`~rtclab.net.Network` or a :class:`~rtclab.net.netns.NetnsNetwork`, and
:class:`NetworkSchedule` runs a list of them on the event loop, reporting each to an event
listener (``Lab.network_events`` passes the lab's, so they land in ``lab.events`` as peer
``"network"``, remote = the host or NAT, with the time they happened).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..model import EventListener
from .emulated import Host, Network
from .link import Link

__all__ = [
    "ACTIONS",
    "NetworkEvent",
    "NetworkSchedule",
    "address_change",
    "apply_event",
    "change_link",
    "change_link_now",
    "current_link",
    "describe_link",
    "link_down",
    "nat_reboot",
    "set_link",
]

ACTIONS = ("link-down", "link-up", "set-link", "nat-reboot", "address-change")
DISRUPTIONS = ("link-down", "nat-reboot", "address-change")  # what peers should notice


@dataclass(frozen=True)
class NetworkEvent:
    """``action`` on ``target`` (a host's name; for ``nat-reboot`` a NAT's or a host's,
    meaning its NAT) ``at_s`` seconds after the schedule starts."""

    at_s: float
    action: str
    target: str
    link: Link | None = None

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown network event {self.action!r}; one of {ACTIONS}")
        if self.action == "set-link" and self.link is None:
            raise ValueError("set-link needs a link")
        if self.at_s < 0:
            raise ValueError("at_s must be >= 0")


def link_down(host: str, at_s: float, duration_s: float | None = None) -> list[NetworkEvent]:
    """The host's link drops everything from ``at_s`` (and is back ``duration_s`` later)."""
    events = [NetworkEvent(at_s, "link-down", host)]
    if duration_s is not None:
        events.append(NetworkEvent(at_s + duration_s, "link-up", host))
    return events


def set_link(host: str, at_s: float, link: Link) -> NetworkEvent:
    return NetworkEvent(at_s, "set-link", host, link)


def nat_reboot(target: str, at_s: float) -> NetworkEvent:
    return NetworkEvent(at_s, "nat-reboot", target)


def address_change(host: str, at_s: float) -> NetworkEvent:
    return NetworkEvent(at_s, "address-change", host)


async def apply_event(network: Any, event: NetworkEvent) -> str:
    """Carry out ``event`` now; returns what happened, for the events frame."""
    if isinstance(network, Network):
        return _apply_emulated(network, event)
    return await _apply_netns(network, event)


def _emulated_host(network: Network, name: str) -> Host:
    try:
        return network.hosts[name]
    except KeyError:
        raise ValueError(f"no host {name!r} on this network") from None


def _change_address(network: Network, host: Host) -> str:
    """A handover: ``host`` gets a new address (its NAT's LAN or the public side); its
    sockets keep the old one, which goes silent (counter ``address-gone``)."""
    if host.nat is not None:
        address = str(host.nat.lan.network_address + next(host.nat._hosts))
    else:
        address = f"203.0.113.{next(network._public)}"
    network._by_ip.pop(host.address, None)
    host.address = address
    network._by_ip[address] = host
    network._guard(address)
    return address


def _apply_emulated(network: Network, event: NetworkEvent) -> str:
    action, name = event.action, event.target
    if action == "nat-reboot":
        nat = network.nats.get(name)
        if nat is None:
            nat = _emulated_host(network, name).nat
        if nat is None:
            raise ValueError(f"{name!r} is no NAT and no host behind one")
        return f"{nat.name}: {nat.table.flush()} mappings flushed"
    host = _emulated_host(network, name)
    if action == "address-change":
        old = host.address
        return f"{old} -> {_change_address(network, host)}"
    link = event.link if action == "set-link" else host.link.replace(up=action == "link-up")
    assert link is not None
    host.set_link(link)
    return describe_link(link)


async def _apply_netns(network: Any, event: NetworkEvent) -> str:
    host = network.hosts.get(event.target)
    if host is None:
        raise ValueError(f"no host {event.target!r} on this network")
    if event.action == "address-change":
        raise ValueError("address-change is emulated-network only for now")
    if event.action == "nat-reboot":
        if host.router is None:
            raise ValueError(f"{event.target!r} is behind no NAT")
        from .netns._reboot import flush_nat

        await flush_nat(host.router)
        return f"{host.router}: conntrack flushed"
    current = current_link(host)
    link = (
        event.link if event.action == "set-link" else current.replace(up=event.action == "link-up")
    )
    assert link is not None
    await change_link(host, link)
    return describe_link(link)


def current_link(host: Any) -> Link:
    """The link of an emulated :class:`Host` or of a namespace host (its NFQUEUE link)."""
    if isinstance(host, Host):
        return host.link
    impairment = getattr(host, "impairment", None)
    return impairment.link if impairment is not None else Link()


def change_link_now(host: Any, link: Link) -> bool:
    """Change a host's link live if that needs no process start: an emulated host, or a
    namespace host already impaired. False: use :func:`change_link` (it starts NFQUEUE)."""
    if isinstance(host, Host):
        host.set_link(link)
        return True
    impairment = getattr(host, "impairment", None)
    if impairment is None:
        return False
    impairment.set_link(link)
    return True


async def change_link(host: Any, link: Link) -> None:
    """Change a host's link live; a namespace host without impairment gets its NFQUEUE
    worker now (started in a thread: it takes a process start)."""
    if not change_link_now(host, link):
        from .nfqueue import impair_namespace

        host.impairment = await asyncio.to_thread(impair_namespace, host.namespace, link)


def describe_link(link: Link) -> str:
    """A short text of what a link does (for events and widgets)."""
    if not link.up:
        return "down"
    parts = []
    if link.trace is not None:
        parts.append(f"trace of {len(link.trace)} opportunities")
    elif link.rate_kbps is not None:
        parts.append(f"{link.rate_kbps:g} kbit/s")
    if link.schedule is not None:
        parts.append("schedule " + " ".join(f"{t:g}s:{r:g}" for t, r in link.schedule))
    for name, unit in (("delay_ms", "ms delay"), ("jitter_ms", "ms jitter")):
        value = getattr(link, name)
        if value:
            parts.append(f"{value:g} {unit}")
    if link.loss:
        parts.append(
            f"{link.loss:.1%} loss" + (f" (bursts of {link.burst:g})" if link.burst > 1 else "")
        )
    if link.queue_ms is not None:
        parts.append(f"queue {link.queue_ms:g} ms")
    elif link.rate_kbps is not None or link.trace is not None:
        parts.append(f"queue {link.queue_bytes} B")
    return ", ".join(parts) or "clean"


class NetworkSchedule:
    """Runs events at their times on the running loop, in order, reporting each to
    ``listener(peer="network", remote=target, event=action, value=what happened)``.

    ``applied`` lists ``(loop time, event, value)``; :meth:`wait` returns when all ran;
    :meth:`cancel` drops those still to come. A failing event is reported as
    ``network-error`` and the schedule carries on.
    """

    def __init__(
        self,
        network: Any,
        events: Iterable[NetworkEvent | Iterable[NetworkEvent]],
        listener: EventListener | None = None,
    ) -> None:
        flat: list[NetworkEvent] = []
        for item in events:
            flat.extend([item] if isinstance(item, NetworkEvent) else item)
        self.network = network
        self.events = sorted(flat, key=lambda e: e.at_s)
        self.listener = listener
        self.applied: list[tuple[float, NetworkEvent, str]] = []
        self._task: asyncio.Task[None] | None = None
        self.started: float | None = None

    def start(self) -> NetworkSchedule:
        """Start the clock now (in the running loop); returns self."""
        loop = asyncio.get_running_loop()
        self.started = loop.time()
        self._task = loop.create_task(self._run(loop, self.started), name="rtclab-net-events")
        return self

    async def _run(self, loop: asyncio.AbstractEventLoop, started: float) -> None:
        for event in self.events:
            await asyncio.sleep(max(started + event.at_s - loop.time(), 0.0))
            try:
                value = await apply_event(self.network, event)
                action = event.action
            except Exception as exc:
                value, action = f"{event.action}: {exc}", "network-error"
            self.applied.append((loop.time(), event, value))
            if self.listener is not None:
                self.listener("network", event.target, action, value)

    async def wait(self) -> None:
        if self._task is not None:
            await asyncio.shield(self._task)

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
