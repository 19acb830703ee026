"""The sans-I/O NAT table: RFC 4787 mapping, filtering, lifetime, determinism."""

from __future__ import annotations

import pytest

from rtclab.net import PRESETS, Filtering, Mapping, NatBehavior, NatTable, predict_direct

IN = ("10.0.0.2", 5000)
S1, S1B, S2 = ("203.0.113.1", 3478), ("203.0.113.1", 3479), ("203.0.113.2", 3478)


def table(preset: str, **changes: object) -> NatTable:
    behavior = PRESETS[preset]
    assert behavior is not None
    return NatTable(behavior.replace(**changes), "198.51.100.1", seed=7)


@pytest.mark.parametrize(
    ("preset", "same_ip", "same_ip_port"),
    [
        ("full-cone", True, True),
        ("restricted-cone", True, True),
        ("port-restricted-cone", True, True),
        ("symmetric", False, False),
    ],
)
def test_mapping(preset: str, same_ip: bool, same_ip_port: bool) -> None:
    nat = table(preset)
    first = nat.outbound(0, IN, S1)
    assert (nat.outbound(0, IN, S1B) == first) is same_ip_port
    assert (nat.outbound(0, IN, S2) == first) is same_ip
    assert nat.outbound(0, IN, S1) == first  # the same flow keeps its mapping


@pytest.mark.parametrize(
    ("preset", "other_ip", "other_port"),
    [
        ("full-cone", True, True),
        ("restricted-cone", False, True),
        ("port-restricted-cone", False, False),
        ("symmetric", False, False),
    ],
)
def test_filtering(preset: str, other_ip: bool, other_port: bool) -> None:
    nat = table(preset)
    external = nat.outbound(0, IN, S1)
    assert external is not None
    assert nat.inbound(0, S1, external) == IN
    assert (nat.inbound(0, S2, external) == IN) is other_ip
    assert (nat.inbound(0, S1B, external) == IN) is other_port
    assert nat.inbound(0, S1, ("198.51.100.1", 1)) is None  # no mapping there


def test_mapping_lifetime_and_refresh() -> None:
    nat = table("port-restricted-cone", mapping_lifetime_s=30.0)
    external = nat.outbound(0, IN, S1)
    assert external is not None
    assert nat.inbound(20, S1, external) == IN
    assert nat.outbound(25, IN, S1) == external  # outbound traffic refreshes it
    assert nat.inbound(50, S1, external) == IN
    assert nat.inbound(56, S1, external) is None  # idle > 30 s: gone
    assert nat.expired == 1


def test_same_seed_same_ports() -> None:
    behavior = PRESETS["symmetric"]
    assert behavior is not None
    runs = []
    for _ in range(2):
        nat = NatTable(behavior, "198.51.100.1", seed=3)
        runs.append([nat.outbound(0, IN, ("203.0.113.9", p)) for p in range(1000, 1020)])
    assert runs[0] == runs[1]
    assert len(set(runs[0])) == 20


def test_presets_and_predictions() -> None:
    assert PRESETS["open"] is None
    assert PRESETS["symmetric"] == NatBehavior(
        Mapping.ADDRESS_AND_PORT_DEPENDENT, Filtering.ADDRESS_AND_PORT_DEPENDENT
    )
    assert not predict_direct("symmetric", "symmetric")
    assert not predict_direct("symmetric", "port-restricted-cone")
    assert predict_direct("symmetric", "restricted-cone")
    assert predict_direct("symmetric", "open")
    assert predict_direct("port-restricted-cone", "port-restricted-cone")
    with pytest.raises(ValueError, match="unknown NAT preset"):
        predict_direct("cone", "open")


def test_flush_forgets_every_mapping_and_new_ones_get_new_ports() -> None:
    from rtclab.net.nat import PRESETS, NatTable

    behavior = PRESETS["port-restricted-cone"]
    assert behavior is not None
    table = NatTable(behavior, "198.51.100.1")
    inside, server = ("10.0.1.2", 5000), ("203.0.113.1", 3478)
    before = table.outbound(0.0, inside, server)
    assert table.inbound(0.1, server, before) == inside
    assert table.flush() == 1 and table.mappings() == []
    assert table.inbound(0.2, server, before) is None  # the reply to the old port: dropped
    assert table.outbound(0.3, inside, server) != before
