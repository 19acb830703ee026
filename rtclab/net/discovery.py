"""RFC 5780 NAT behaviour discovery with raw UDP probes: which mapping and filtering a NAT has.

The same code probes both backends: it opens its socket with
``loop.create_datagram_endpoint``, which an attached emulated host turns into an emulated
socket, and which inside a Linux network namespace is a real one. Run it as
``python -m rtclab.net.discovery STUN_IP [PORT]`` to print the result as JSON (the namespace
backend does that inside a namespace).
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import asdict, dataclass
from typing import Any, cast

from aioice import stun

from .nat import Address, Filtering, Mapping

__all__ = ["NatDiscovery", "discover_nat"]


@dataclass(frozen=True)
class NatDiscovery:
    """What the probes saw. ``mapping``/``filtering`` are ``None`` if a test got no answer."""

    local: Address
    mapped: Address | None
    mapping: Mapping | None
    filtering: Filtering | None
    hairpinning: bool | None = None

    @property
    def behind_nat(self) -> bool:
        return self.mapped is not None and self.mapped != self.local

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["mapping"] = self.mapping.value if self.mapping else None
        out["filtering"] = self.filtering.value if self.filtering else None
        return out


class _Probe(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.transactions: dict[bytes, asyncio.Future[tuple[stun.Message, Address]]] = {}
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # not isinstance-checked: asyncio's own UDP transport is no DatagramTransport subclass
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            message = stun.parse_message(data)
        except ValueError:
            return
        waiter = self.transactions.get(message.transaction_id)
        if waiter is not None and not waiter.done():
            waiter.set_result((message, (str(addr[0]), int(addr[1]))))

    async def request(
        self, server: Address, change: int = 0, timeout: float = 0.5, tries: int = 3
    ) -> tuple[stun.Message, Address] | None:
        """A Binding request (with CHANGE-REQUEST flags); ``None`` when nothing came back."""
        assert self.transport is not None
        message = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
        if change:
            message.attributes["CHANGE-REQUEST"] = change
        waiter: asyncio.Future[tuple[stun.Message, Address]] = (
            asyncio.get_running_loop().create_future()
        )
        self.transactions[message.transaction_id] = waiter
        try:
            for _ in range(tries):
                self.transport.sendto(bytes(message), server)
                try:
                    return await asyncio.wait_for(asyncio.shield(waiter), timeout)
                except asyncio.TimeoutError:
                    continue
            return None
        finally:
            del self.transactions[message.transaction_id]


async def discover_nat(
    server: Address,
    *,
    local_ip: str = "0.0.0.0",
    timeout: float = 0.5,
    tries: int = 3,
    hairpin: bool = True,
) -> NatDiscovery:
    """RFC 5780 §4.3 (mapping) and §4.4 (filtering) against a STUN server with an
    alternate address (OTHER-ADDRESS), plus a hairpinning check (§4.5-like).

    Mapping: the same local port asks the primary address, then the alternate IP, then
    the alternate IP and port; equal mapped addresses mean the mapping ignores that part of
    the destination. Filtering: a fresh port asks for the answer from the other IP and port
    (arrives: endpoint-independent), else from the other port only (arrives:
    address-dependent), else address-and-port-dependent.
    """
    loop = asyncio.get_running_loop()

    async def open_probe() -> tuple[asyncio.DatagramTransport, _Probe]:
        transport, protocol = await loop.create_datagram_endpoint(_Probe, local_addr=(local_ip, 0))
        assert isinstance(protocol, _Probe)
        return transport, protocol

    transport, probe = await open_probe()
    local = transport.get_extra_info("sockname")
    local = (str(local[0]), int(local[1]))
    try:
        first = await probe.request(server, timeout=timeout, tries=tries)
        if first is None:
            return NatDiscovery(local, None, None, None)
        response, _ = first
        mapped1 = tuple(response.attributes["XOR-MAPPED-ADDRESS"])
        other = response.attributes.get("OTHER-ADDRESS")
        if other is None:
            raise RuntimeError(f"STUN server {server} does not support RFC 5780 (no OTHER-ADDRESS)")
        mapping: Mapping | None = None
        second = await probe.request((other[0], server[1]), timeout=timeout, tries=tries)
        if second is not None:
            mapped2 = tuple(second[0].attributes["XOR-MAPPED-ADDRESS"])
            if mapped2 == mapped1:
                mapping = Mapping.ENDPOINT_INDEPENDENT
            else:
                third = await probe.request(tuple(other), timeout=timeout, tries=tries)
                if third is not None:
                    mapped3 = tuple(third[0].attributes["XOR-MAPPED-ADDRESS"])
                    mapping = (
                        Mapping.ADDRESS_DEPENDENT
                        if mapped3 == mapped2
                        else Mapping.ADDRESS_AND_PORT_DEPENDENT
                    )
        hairpinning: bool | None = None
        if hairpin and mapped1 != local:
            # send to our own mapped address from the same socket: does the NAT loop it back?
            marker = stun.Message(
                message_method=stun.Method.BINDING, message_class=stun.Class.INDICATION
            )
            got: asyncio.Future[tuple[stun.Message, Address]] = loop.create_future()
            probe.transactions[marker.transaction_id] = got
            try:
                for _ in range(tries):
                    assert probe.transport is not None
                    probe.transport.sendto(bytes(marker), mapped1)
                    try:
                        await asyncio.wait_for(asyncio.shield(got), timeout)
                        hairpinning = True
                        break
                    except asyncio.TimeoutError:
                        continue
                else:
                    hairpinning = False
            finally:
                del probe.transactions[marker.transaction_id]
    finally:
        transport.close()

    # filtering, on a fresh mapping so earlier probes opened nothing
    transport, probe = await open_probe()
    try:
        filtering: Filtering | None
        primed = await probe.request(server, timeout=timeout, tries=tries)
        if primed is None:
            filtering = None
        elif await probe.request(server, change=0x6, timeout=timeout, tries=tries):
            filtering = Filtering.ENDPOINT_INDEPENDENT
        elif await probe.request(server, change=0x2, timeout=timeout, tries=tries):
            filtering = Filtering.ADDRESS_DEPENDENT
        else:
            filtering = Filtering.ADDRESS_AND_PORT_DEPENDENT
    finally:
        transport.close()
    return NatDiscovery(local, (str(mapped1[0]), int(mapped1[1])), mapping, filtering, hairpinning)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m rtclab.net.discovery STUN_IP [PORT]", file=sys.stderr)
        return 2
    port = int(args[1]) if len(args) > 1 else 3478
    result = asyncio.run(discover_nat((args[0], port)))
    print(json.dumps(result.to_dict()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
