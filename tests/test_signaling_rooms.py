"""Room rules of the hub, sans I/O: every rule, plus hypothesis properties over arbitrary input."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtclab.signaling.hub import Hub, Limits
from rtclab.signaling.protocol import (
    ErrorMessage,
    Join,
    PeerJoined,
    PeerLeft,
    Relayed,
    RoomJoined,
    ServerMessage,
)

Out = list[tuple[int, ServerMessage]]


def send(rooms: Hub[int], conn: int, obj: Any) -> list[tuple[int, dict[str, Any]]]:
    """Feed one JSON message; return (recipient, decoded wire message) pairs."""
    out = rooms.receive_data(conn, json.dumps(obj).encode())
    return [(c, json.loads(m.encode())) for c, m in out.deliveries]


def joined(*users: tuple[int, str, str]) -> Hub[int]:
    rooms: Hub[int] = Hub()
    for conn, room, user in users:
        rooms.connect(conn)
        send(rooms, conn, {"type": "join", "roomId": room, "userId": user})
    return rooms


def codes(out: list[tuple[int, dict[str, Any]]]) -> list[tuple[int, str]]:
    return [(c, m["code"]) for c, m in out if m["type"] == "error"]


# ----------------------------------------------------------------------------- join


def test_first_join_gets_empty_peers() -> None:
    rooms: Hub[int] = Hub()
    rooms.connect(1)
    out = rooms.receive(1, Join("r", "alice")).deliveries
    assert out == [(1, RoomJoined("r", ()))]
    assert rooms.rooms() == {"r": ["alice"]} and rooms.user_of(1) == "alice"


def test_second_join_gets_peers_and_others_get_peer_joined() -> None:
    rooms = joined((1, "r", "alice"), (2, "r", "bob"))
    rooms.connect(3)
    out = rooms.receive(3, Join("r", "carol")).deliveries
    assert out[0] == (3, RoomJoined("r", ("alice", "bob")))
    assert sorted(out[1:]) == [(1, PeerJoined("carol")), (2, PeerJoined("carol"))]


def test_duplicate_user_refused_and_first_keeps_identity() -> None:
    rooms = joined((1, "r", "alice"), (2, "r", "bob"))
    rooms.connect(3)
    assert codes(send(rooms, 3, {"type": "join", "roomId": "r", "userId": "alice"})) == [
        (3, "duplicate-user")
    ]
    assert rooms.user_of(1) == "alice" and rooms.user_of(3) is None
    out = send(rooms, 2, {"type": "offer", "to": "alice", "sdp": {}})
    assert [(c, m["from"]) for c, m in out] == [(1, "bob")]


def test_same_user_id_in_other_room_is_fine() -> None:
    rooms = joined((1, "r1", "alice"), (2, "r2", "alice"))
    assert rooms.rooms() == {"r1": ["alice"], "r2": ["alice"]}


def test_join_twice_is_refused() -> None:
    rooms = joined((1, "r", "alice"))
    out = send(rooms, 1, {"type": "join", "roomId": "other", "userId": "alice2"})
    assert codes(out) == [(1, "already-joined")]
    assert rooms.room_of(1) == "r" and rooms.user_of(1) == "alice"


# ----------------------------------------------------------------------------- relay


@pytest.mark.parametrize(
    "kind,field", [("offer", "sdp"), ("answer", "sdp"), ("ice-candidate", "candidate")]
)
def test_relay_sets_from_and_keeps_payload(kind: str, field: str) -> None:
    rooms = joined((1, "r", "alice"), (2, "r", "bob"))
    payload = {"type": kind, "sdp": "v=0\r\n", "src": "alice", "seq": 7}
    out = send(rooms, 1, {"type": kind, "to": "bob", field: payload})
    assert out == [(2, {"type": kind, "to": "bob", field: payload, "from": "alice"})]
    assert rooms.relayed == 1


def test_forged_from_is_overwritten() -> None:
    rooms = joined((1, "r", "alice"), (2, "r", "bob"))
    out = send(rooms, 1, {"type": "offer", "from": "bob", "to": "bob", "sdp": {}})
    assert out[0][1]["from"] == "alice"


def test_relay_before_join_is_refused() -> None:
    rooms = joined((1, "r", "alice"))
    rooms.connect(2)
    out = send(rooms, 2, {"type": "offer", "to": "alice", "sdp": {}})
    assert codes(out) == [(2, "not-joined")]


def test_relay_outside_room_is_refused() -> None:
    rooms = joined((1, "r1", "alice"), (2, "r2", "bob"))
    out = send(rooms, 1, {"type": "ice-candidate", "to": "bob", "candidate": None})
    assert codes(out) == [(1, "unknown-peer")]
    assert rooms.relayed == 0 and rooms.errors["unknown-peer"] == 1


def test_end_of_candidates_null_is_relayed() -> None:
    rooms = joined((1, "r", "alice"), (2, "r", "bob"))
    out = send(rooms, 2, {"type": "ice-candidate", "to": "alice", "candidate": None})
    assert out == [(1, {"type": "ice-candidate", "to": "alice", "candidate": None, "from": "bob"})]


# ----------------------------------------------------------------------------- leave / disconnect


def test_leave_notifies_room_and_allows_rejoin() -> None:
    rooms = joined((1, "r", "alice"), (2, "r", "bob"))
    assert send(rooms, 1, {"type": "leave", "roomId": "r"}) == [
        (2, {"type": "peer-left", "peerId": "alice"})
    ]
    assert rooms.user_of(1) is None and rooms.rooms() == {"r": ["bob"]}
    out = send(rooms, 1, {"type": "join", "roomId": "r", "userId": "alice"})
    assert out[0] == (1, {"type": "room-joined", "roomId": "r", "peers": ["bob"]})


def test_leave_without_room_id_and_errors() -> None:
    rooms = joined((1, "r", "alice"), (2, "r", "bob"))
    assert codes(send(rooms, 1, {"type": "leave", "roomId": "elsewhere"})) == [(1, "not-joined")]
    assert send(rooms, 1, {"type": "leave"}) == [(2, {"type": "peer-left", "peerId": "alice"})]
    assert codes(send(rooms, 1, {"type": "leave"})) == [(1, "not-joined")]


def test_disconnect_notifies_room_and_deletes_empty_rooms() -> None:
    rooms = joined((1, "r", "alice"), (2, "r", "bob"))
    assert rooms.disconnect(1).deliveries == [(2, PeerLeft("alice"))]
    assert rooms.disconnect(2).deliveries == []
    assert rooms.rooms() == {} and rooms.room_count == 0 and rooms.connections == 0
    assert rooms.disconnect(99).deliveries == []


def test_unjoined_disconnect_is_silent() -> None:
    rooms: Hub[int] = Hub()
    rooms.connect(1)
    assert rooms.disconnect(1).deliveries == []


def test_parse_errors_become_error_replies() -> None:
    rooms = joined((1, "r", "alice"))
    out = rooms.receive_data(1, b"nope{").deliveries
    assert out == [(1, ErrorMessage("invalid-json", "frame is not valid JSON"))]
    assert codes(send(rooms, 1, {"type": "dance"})) == [(1, "unknown-type")]
    assert dict(rooms.errors) == {"invalid-json": 1, "unknown-type": 1}


def test_message_size_limit() -> None:
    rooms: Hub[int] = Hub(Limits(max_message_size=100))
    rooms.connect(1)
    assert codes(send(rooms, 1, {"type": "join", "roomId": "r" * 100, "userId": "u"})) == [
        (1, "message-too-large")
    ]


def test_connection_bookkeeping_errors_are_programming_errors() -> None:
    rooms: Hub[int] = Hub()
    rooms.connect(1)
    with pytest.raises(ValueError):
        rooms.connect(1)
    with pytest.raises(ValueError):
        rooms.receive_data(2, b"{}")


# ----------------------------------------------------------------------------- properties

ids = st.sampled_from(["alice", "bob", "carol", "dave", "", "x" * 129])
room_ids = st.sampled_from(["r1", "r2", "r3"])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
messages = st.one_of(
    st.builds(lambda r, u: {"type": "join", "roomId": r, "userId": u}, room_ids, ids),
    st.builds(
        lambda t, to, p, f: {"type": t, "to": to, "sdp": p, "candidate": p, "from": f},
        st.sampled_from(["offer", "answer", "ice-candidate"]),
        ids,
        st.none() | st.dictionaries(st.text(max_size=3), json_values, max_size=3),
        ids,
    ),
    st.builds(lambda r: {"type": "leave", "roomId": r}, room_ids | st.none()),
    st.dictionaries(st.sampled_from(["type", "to", "roomId", "userId", "sdp"]), json_values),
    json_values,
)
frames = st.one_of(messages.map(lambda m: json.dumps(m).encode()), st.binary(max_size=40))
steps = st.lists(
    st.tuples(st.integers(0, 5), st.one_of(frames, st.just(b"CONNECT"), st.just(b"CLOSE"))),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(steps)
def test_arbitrary_input_keeps_every_invariant(script: list[tuple[int, bytes]]) -> None:
    rooms: Hub[int] = Hub()
    live: set[int] = set()
    for conn, frame in script:
        # What the machine says about identities before this step.
        before = {c: (rooms.user_of(c), rooms.room_of(c)) for c in live}
        if frame == b"CONNECT":
            if conn not in live:
                rooms.connect(conn)
                live.add(conn)
            continue
        if frame == b"CLOSE":
            out = rooms.disconnect(conn).deliveries
            live.discard(conn)
            sender_room = before.get(conn, (None, None))[1]
        elif conn in live:
            out = rooms.receive_data(conn, frame).deliveries  # must never raise
            sender_room = before[conn][1]
        else:
            continue
        for target, message in out:
            assert target in live, "delivered to a closed connection"
            wire = json.loads(message.encode())
            if isinstance(message, ErrorMessage | RoomJoined):
                assert target == conn
            else:
                assert target != conn  # relays never loop back to their sender
                # never outside the sender's room: the one it joined for peer-joined, the
                # one it was in when the message arrived for relays and peer-left
                room = rooms.room_of(conn) if isinstance(message, PeerJoined) else sender_room
                assert before[target][1] == room is not None
            if isinstance(message, Relayed):
                assert wire["from"] == before[conn][0]
        # Nobody but the sender changes identity.
        for other in live - {conn}:
            assert (rooms.user_of(other), rooms.room_of(other)) == before.get(other, (None, None))
        # Room table matches the connections' identities; no empty rooms.
        table = rooms.rooms()
        assert all(table.values())
        members = sorted((r, u) for r, users in table.items() for u in users)
        assert members == sorted(
            (rooms.room_of(c), rooms.user_of(c)) for c in live if rooms.user_of(c) is not None
        )


# ----------------------------------------------------------------------------- caps and tokens


def test_room_size_and_room_count_caps() -> None:
    rooms: Hub[int] = Hub(Limits(max_room_size=2, max_rooms=1))
    for conn in (1, 2, 3, 4):
        rooms.connect(conn)
    send(rooms, 1, {"type": "join", "roomId": "r", "userId": "a"})
    send(rooms, 2, {"type": "join", "roomId": "r", "userId": "b"})
    assert codes(send(rooms, 3, {"type": "join", "roomId": "r", "userId": "c"})) == [
        (3, "room-full")
    ]
    assert codes(send(rooms, 3, {"type": "join", "roomId": "r2", "userId": "c"})) == [
        (3, "too-many-rooms")
    ]
    send(rooms, 1, {"type": "leave"})
    assert send(rooms, 3, {"type": "join", "roomId": "r", "userId": "c"})[0][1]["peers"] == ["b"]
    assert dict(rooms.errors) == {"room-full": 1, "too-many-rooms": 1}


def test_tokens_from_join_or_handshake_and_refusals_close() -> None:
    rooms: Hub[int] = Hub(Limits(token="s", room_tokens={"vip": "v"}))
    rooms.connect(1)
    rooms.connect(2, credential="s")
    rooms.connect(3, credential="v")
    rooms.connect(4)
    assert (
        send(rooms, 1, {"type": "join", "roomId": "r", "userId": "a", "token": "s"})[0][1]["type"]
        == "room-joined"
    )
    assert send(rooms, 2, {"type": "join", "roomId": "r", "userId": "b"})[0][1]["type"] == (
        "room-joined"
    )
    assert send(rooms, 3, {"type": "join", "roomId": "vip", "userId": "c"})[0][1]["type"] == (
        "room-joined"
    )
    # the join field overrides the handshake credential, and a refusal closes the connection
    out = rooms.receive_data(
        4, json.dumps({"type": "join", "roomId": "vip", "userId": "d", "token": "s"})
    )
    assert [(c, m.to_dict()["code"]) for c, m in out.deliveries] == [(4, "unauthorized")]
    assert [(c.conn, c.code) for c in out.closes] == [(4, 1008)] and rooms.user_of(4) is None


def test_remote_members_get_relays_but_no_notifications() -> None:
    rooms = joined((1, "r", "alice"))
    remote = 100  # any hashable stands for another process's member
    assert rooms.add_remote(remote, "r", "bob").deliveries == [(1, PeerJoined("bob"))]
    assert rooms.add_remote(remote, "r2", "carol").deliveries == []  # nobody local to tell
    out = send(rooms, 1, {"type": "offer", "to": "bob", "sdp": {}})
    assert out == [(remote, {"type": "offer", "to": "bob", "sdp": {}, "from": "alice"})]
    rooms.connect(2)
    out = send(rooms, 2, {"type": "join", "roomId": "r", "userId": "dave"})
    assert out[0][1]["peers"] == ["alice", "bob"]
    assert sorted(c for c, _ in out[1:]) == [1]  # bob's process tells bob itself
    assert codes(send(rooms, 1, {"type": "join", "roomId": "x", "userId": "y"})) == [
        (1, "already-joined")
    ]
    # a remote event never unseats a local member
    assert rooms.add_remote(remote, "r", "alice").deliveries == []
    assert rooms.user_of(1) == "alice"
    assert rooms.remove_remote("r", "alice").deliveries == []
    left = rooms.remove_remote("r", "bob").deliveries
    assert sorted(left) == [(1, PeerLeft("bob")), (2, PeerLeft("bob"))]
    assert rooms.remove_remote("r2", "carol").deliveries == [] and "r2" not in rooms.rooms()
    assert rooms.is_local(1) and not rooms.is_local(remote)


caps = st.tuples(st.none() | st.integers(1, 3), st.none() | st.integers(1, 2))
join_tokens = st.none() | st.sampled_from(["s", "v", "x"])
capped_messages = st.one_of(
    st.builds(
        lambda r, u, t: {"type": "join", "roomId": r, "userId": u, "token": t},
        room_ids,
        ids,
        join_tokens,
    ),
    messages,
)


@settings(max_examples=200, deadline=None)
@given(caps, st.lists(st.tuples(st.integers(0, 5), capped_messages), max_size=50))
def test_caps_and_tokens_always_hold(
    limits: tuple[int | None, int | None], script: list[tuple[int, Any]]
) -> None:
    max_room_size, max_rooms = limits
    rooms: Hub[int] = Hub(
        Limits(max_room_size=max_room_size, max_rooms=max_rooms, token="s", room_tokens={"r3": "v"})
    )
    for conn in range(6):
        rooms.connect(conn)
    tokens: dict[int, Any] = {}
    for conn, message in script:
        before = rooms.user_of(conn)
        out = rooms.receive_data(conn, json.dumps(message).encode())
        for close in out.closes:  # only a refused token closes, and only the sender
            assert (close.conn, close.code) == (conn, 1008)
            assert [m.to_dict()["code"] for _, m in out.deliveries] == ["unauthorized"]
        if before is None and rooms.user_of(conn) is not None:
            tokens[conn] = message.get("token")
        table = rooms.rooms()
        if max_room_size is not None:
            assert all(len(users) <= max_room_size for users in table.values())
        if max_rooms is not None:
            assert len(table) <= max_rooms
        for c in range(6):  # everyone seated presented the right token for their room
            room = rooms.room_of(c)
            if room is not None:
                assert tokens[c] == ("v" if room == "r3" else "s")
