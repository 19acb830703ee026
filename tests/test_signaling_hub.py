"""The sans-I/O hub's outcomes: events and closes as values, rate and client caps, the
cluster's registry mode; and the pure frame splitter. (Room rules: test_signaling_rooms.py.)"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from helpers import masked_frame
from hypothesis import given, settings
from hypothesis import strategies as st

from rtclab.signaling.frames import RawFrame, split_frames
from rtclab.signaling.hub import (
    Close,
    Connected,
    Contested,
    Hub,
    Joined,
    JoinRequested,
    Left,
    Limits,
    Outcome,
    Refused,
)
from rtclab.signaling.protocol import ErrorMessage, PeerJoined, PeerLeft, RoomJoined


def data(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def join(room: str, user: str, **extra: Any) -> bytes:
    return data({"type": "join", "roomId": room, "userId": user, **extra})


def codes(out: Outcome[Any]) -> list[tuple[Any, str]]:
    return [(c, m.code) for c, m in out.deliveries if isinstance(m, ErrorMessage)]


# ----------------------------------------------------------------------------- events


def test_join_leave_and_disconnect_come_out_as_events() -> None:
    hub: Hub[str] = Hub()
    assert list(hub.connect("a").events) == [Connected("a")]
    hub.connect("b")
    out = hub.receive_data("a", join("r", "alice"))
    assert out.deliveries == [("a", RoomJoined("r", ()))]
    assert list(out.events) == [Joined("a", "r", "alice")] and not out.closes
    out = hub.receive_data("b", join("r", "bob"))
    assert list(out.events) == [Joined("b", "r", "bob")]
    assert out.deliveries == [("b", RoomJoined("r", ("alice",))), ("a", PeerJoined("bob"))]
    out = hub.receive_data("a", data({"type": "leave"}))
    assert out.deliveries == [("b", PeerLeft("alice"))]
    assert list(out.events) == [Left("a", "r", "alice")]
    out = hub.disconnect("b")  # the last member: no one to tell, but the event is there
    assert out.deliveries == [] and list(out.events) == [Left("b", "r", "bob")]
    assert hub.rooms() == {}


def test_a_duplicate_join_is_refused_and_contests_the_holders_seat() -> None:
    hub: Hub[str] = Hub()
    hub.connect("old")
    hub.connect("new")
    hub.receive_data("old", join("r", "bob"))
    out = hub.receive_data("new", join("r", "bob"))
    assert codes(out) == [("new", "duplicate-user")]
    assert [type(e) for e in out.events] == [Refused, Contested]
    assert out.events[1] == Contested("old")  # the adapter checks that one is alive
    assert hub.rooms() == {"r": ["bob"]} and hub.user_of("old") == "bob"
    assert list(hub.disconnect("a").events) == []  # not in a room any more: nothing happened


def test_every_refusal_is_an_error_delivery_an_event_and_a_count() -> None:
    hub: Hub[int] = Hub()
    hub.connect(1)
    for frame, code in (
        (b"nope{", "invalid-json"),
        (data({"type": "teleport"}), "unknown-type"),
        (data({"type": "offer", "to": "x", "sdp": {}}), "not-joined"),
    ):
        out = hub.receive_data(1, frame)
        assert codes(out) == [(1, code)]
        assert [(e.conn, e.code) for e in out.events if isinstance(e, Refused)] == [(1, code)]
        assert not out.closes  # the connection stays usable
    assert dict(hub.errors) == {"invalid-json": 1, "unknown-type": 1, "not-joined": 1}
    assert list(hub.receive_data(1, join("r", "a")).events) == [Joined(1, "r", "a")]


def test_relay_outcome_carries_no_events() -> None:
    hub: Hub[int] = Hub()
    for conn, user in ((1, "a"), (2, "b")):
        hub.connect(conn)
        hub.receive_data(conn, join("r", user))
    out = hub.receive_data(1, data({"type": "offer", "to": "b", "sdp": {"x": 1}}))
    assert [c for c, _ in out.deliveries] == [2]
    assert json.loads(out.deliveries[0][1].encode())["from"] == "a"
    assert not out.events and not out.closes and hub.relayed == 1


@pytest.mark.parametrize(
    "kind,field", [("offer", "sdp"), ("answer", "sdp"), ("ice-candidate", "candidate")]
)
def test_message_addressed_to_its_sender_is_refused_and_the_sender_stays_usable(
    kind: str, field: str
) -> None:
    hub: Hub[int] = Hub()
    for conn, user in ((1, "alice"), (2, "bob")):
        hub.connect(conn)
        hub.receive_data(conn, join("r", user))
    out = hub.receive_data(1, data({"type": kind, "to": "alice", field: {}}))
    assert codes(out) == [(1, "self-addressed")] and not out.closes
    assert hub.relayed == 0 and hub.errors["self-addressed"] == 1
    out = hub.receive_data(1, data({"type": kind, "to": "bob", field: {}}))
    assert [c for c, _ in out.deliveries] == [2]


# ----------------------------------------------------------------------------- closes and caps


def test_wrong_token_is_refused_with_close_1008() -> None:
    hub: Hub[int] = Hub(Limits(token="s"))
    hub.connect(1)
    hub.connect(2, credential="s")
    out = hub.receive_data(1, join("r", "a", token="guess"))
    assert codes(out) == [(1, "unauthorized")]
    assert list(out.closes) == [Close(1, 1008, "unauthorized")]
    assert list(hub.receive_data(2, join("r", "b")).events) == [Joined(2, "r", "b")]


def test_client_cap_refuses_with_close_1013_and_frees_slots() -> None:
    hub: Hub[int] = Hub(Limits(max_clients=2))
    hub.connect(1)
    hub.connect(2)
    out = hub.connect(3)
    assert codes(out) == [(3, "server-full")] and list(out.closes) == [
        Close(3, 1013, "server full")
    ]
    assert not hub.is_local(3) and hub.connections == 2
    hub.disconnect(1)
    assert list(hub.connect(3).events) == [Connected(3)]
    with pytest.raises(ValueError):
        hub.connect(3)


def test_rate_limit_takes_time_as_a_value() -> None:
    hub: Hub[int] = Hub(Limits(rate=10.0, burst=3))
    hub.connect(1, now=100.0)
    hub.receive_data(1, join("r", "a"), now=100.0)
    frame = data({"type": "offer", "to": "nobody", "sdp": {}})
    got = [codes(hub.receive_data(1, frame, now=100.0)) for _ in range(4)]
    assert got == [[(1, "unknown-peer")]] * 2 + [[(1, "rate-limited")]] * 2
    assert hub.admit(1, 100.0) is not None  # still empty at the same instant
    assert hub.admit(1, 100.15) is None  # 0.15 s at 10/s: a token and a half back
    assert codes(hub.receive_data(1, frame, now=100.35)) == [(1, "unknown-peer")]
    assert hub.errors["rate-limited"] == 3


def test_unlimited_rate_and_unknown_connections() -> None:
    hub: Hub[int] = Hub(Limits(rate=None))
    hub.connect(1)
    assert all(hub.admit(1, 0.0) is None for _ in range(10_000))
    with pytest.raises(ValueError):
        hub.admit(2, 0.0)
    with pytest.raises(ValueError):
        hub.receive_data(2, b"{}")


def test_refusals_made_by_the_transport_count_like_the_hubs() -> None:
    hub: Hub[int] = Hub()
    out = hub.refuse(7, "message-too-large", "message exceeds 10 bytes")  # 7 never connected
    assert codes(out) == [(7, "message-too-large")]
    assert list(out.events) == [Refused(7, "message-too-large", "message exceeds 10 bytes")]
    assert hub.errors["message-too-large"] == 1


# ----------------------------------------------------------------------------- registry mode


def test_registry_mode_asks_before_seating() -> None:
    hub: Hub[int] = Hub(Limits(max_room_size=1))
    hub.registry = True
    hub.connect(1)
    hub.connect(2)
    out = hub.receive_data(1, join("r", "a"))
    assert out.deliveries == [] and list(out.events) == [JoinRequested(1, "r", "a")]
    assert hub.user_of(1) is None  # not seated until the registry says so
    out = hub.seat(1, "r", "a")
    assert out.deliveries == [(1, RoomJoined("r", ()))]
    assert list(out.events) == [Joined(1, "r", "a")]
    # caps and duplicates are the registry's call in this mode (its view is the whole cluster)
    assert list(hub.receive_data(2, join("r", "b")).events) == [JoinRequested(2, "r", "b")]
    out = hub.refuse(2, "room-full", "room 'r' is full")
    assert codes(out) == [(2, "room-full")]
    assert codes(hub.receive_data(1, join("x", "y"))) == [(1, "already-joined")]


def test_remote_member_leaving_is_no_local_event() -> None:
    hub: Hub[object] = Hub()
    hub.connect("a")
    hub.receive_data("a", join("r", "alice"))
    remote = object()
    out = hub.add_remote(remote, "r", "bob")
    assert out.deliveries == [("a", PeerJoined("bob"))] and not out.events
    out = hub.remove_remote("r", "bob")
    assert out.deliveries == [("a", PeerLeft("bob"))] and not out.events


# ----------------------------------------------------------------------------- frame splitting


def masked(payload: bytes, opcode: int = 1, fin: bool = True) -> bytes:
    return masked_frame(payload, opcode, fin, mask=b"m4sk")


def test_split_hands_whole_messages_on_and_other_frames_whole() -> None:
    ping = masked(b"p", opcode=9)
    first, last = masked(b"ab", fin=False), masked(b"cd", opcode=0)
    stream = masked(b"one") + ping + first + masked(b"p2", opcode=9) + last + masked(b"two", 2)
    items, rest, fragmented, stopped = split_frames(stream, 100)
    assert items == [b"one", ping, first, masked(b"p2", opcode=9), last, b"two"]
    assert [type(i) for i in items] == [bytes, RawFrame, RawFrame, RawFrame, RawFrame, bytes]
    assert (rest, fragmented, stopped) == (b"", False, False)
    # a fragmented message left open carries over to the next read
    items, rest, fragmented, _ = split_frames(first + masked(b"x")[:3], 100)
    assert items == [first] and fragmented and rest == masked(b"x")[:3]
    items, rest, fragmented, _ = split_frames(masked(b"x", opcode=1), 100, fragmented)
    assert type(items[0]) is RawFrame  # a data frame mid-message: websockets refuses it


def test_split_stops_at_frames_websockets_must_refuse() -> None:
    ok = masked(b"ok")
    unmasked = b"\x81\x02hi"
    items, rest, _, stopped = split_frames(ok + unmasked + ok, 100)
    assert items == [b"ok"] and rest == unmasked + ok and stopped
    big = masked(b"x" * 200)
    items, rest, _, stopped = split_frames(big, 199)  # over the limit: from the header alone
    assert items == [] and rest == big and stopped
    items, rest, _, stopped = split_frames(big[:4], 199)
    assert (items, rest, stopped) == ([], big[:4], True)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.binary(max_size=70_000), min_size=1, max_size=5),
    st.lists(st.integers(0, 400_000), max_size=8),
)
def test_split_is_indifferent_to_read_boundaries(payloads: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(masked(p, opcode=2) for p in payloads)
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    got: list[bytes] = []
    rest = b""
    for a, b in itertools.pairwise(points):
        items, rest, fragmented, stopped = split_frames(rest + stream[a:b], 70_000)
        assert not fragmented and not stopped
        got.extend(items)
    assert got == payloads and rest == b""
