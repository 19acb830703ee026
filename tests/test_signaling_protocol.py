"""Wire protocol: parsing, validation and serialisation, without sockets."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtclab.signaling.protocol import (
    ERROR_CODES,
    MAX_ID_LENGTH,
    ErrorMessage,
    Join,
    Leave,
    PeerJoined,
    PeerLeft,
    ProtocolError,
    Relay,
    Relayed,
    RoomJoined,
    ServerMessage,
    from_suffix,
    parse,
)


def j(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def error_code(data: str | bytes, **kw: Any) -> str:
    result = parse(data, **kw)
    assert isinstance(result, ProtocolError), result
    return result.code


# ----------------------------------------------------------------------------- valid messages


@pytest.mark.parametrize(
    "data",
    [
        j({"type": "join", "roomId": "r", "userId": "u"}),
        json.dumps({"type": "join", "roomId": "r", "userId": "u"}),
    ],
)
def test_join_from_bytes_or_str(data: str | bytes) -> None:
    assert parse(data) == Join("r", "u")


def test_leave_with_and_without_room() -> None:
    assert parse(j({"type": "leave", "roomId": "r"})) == Leave("r")
    assert parse(j({"type": "leave"})) == Leave(None)
    assert parse(j({"type": "leave", "roomId": None})) == Leave(None)


@pytest.mark.parametrize("kind", ["offer", "answer"])
def test_offer_answer(kind: str) -> None:
    sdp = {"type": kind, "sdp": "v=0\r\n", "src": "x", "seq": 3}
    msg = parse(j({"type": kind, "to": "bob", "sdp": sdp}))
    assert isinstance(msg, Relay)
    assert (msg.type, msg.to, msg.payload) == (kind, "bob", sdp)


def test_ice_candidate_object_and_null() -> None:
    cand = {"candidate": "candidate:1 1 udp 1 127.0.0.1 5000 typ host", "sdpMid": "0"}
    msg = parse(j({"type": "ice-candidate", "to": "bob", "candidate": cand}))
    assert isinstance(msg, Relay) and msg.payload == cand
    end = parse(j({"type": "ice-candidate", "to": "bob", "candidate": None}))
    assert isinstance(end, Relay) and end.payload is None


def test_binary_frames_are_read_as_utf8_json() -> None:
    assert parse(bytearray(j({"type": "leave"}))) == Leave(None)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "data",
    [
        b"this is not json{",
        b"",
        b"{'a': 1}",
        b'{"type": NaN}',
        b'{"type":"offer","to":"b","sdp":{"x":Infinity}}',
        b"[" * 20_000 + b"]" * 20_000,
    ],
)
def test_invalid_json(data: bytes) -> None:
    assert error_code(data) == "invalid-json"


def test_invalid_utf8() -> None:
    assert error_code(b'{"type":"join","roomId":"\xff"}') == "invalid-json"
    assert error_code('{"type":"leave","x":"\ud800"}') == "invalid-json"


@pytest.mark.parametrize("obj", [[], "join", 1, None, True])
def test_not_an_object(obj: Any) -> None:
    assert error_code(j(obj)) == "invalid-message"


@pytest.mark.parametrize(
    "obj,field",
    [
        ({}, "type"),
        ({"type": 3}, "type"),
        ({"type": "join", "userId": "u"}, "roomId"),
        ({"type": "join", "roomId": "r"}, "userId"),
        ({"type": "join", "roomId": 1, "userId": "u"}, "roomId"),
        ({"type": "join", "roomId": "r", "userId": ""}, "userId"),
        ({"type": "join", "roomId": "r", "userId": "u" * (MAX_ID_LENGTH + 1)}, "userId"),
        ({"type": "offer", "sdp": {}}, "to"),
        ({"type": "offer", "to": ["b"], "sdp": {}}, "to"),
        ({"type": "offer", "to": "b"}, "sdp"),
        ({"type": "answer", "to": "b", "sdp": "v=0"}, "sdp"),
        ({"type": "offer", "to": "b", "sdp": None}, "sdp"),
        ({"type": "ice-candidate", "to": "b"}, "candidate"),
        ({"type": "ice-candidate", "to": "b", "candidate": "candidate:1"}, "candidate"),
        ({"type": "leave", "roomId": 7}, "roomId"),
    ],
)
def test_invalid_message_names_the_field(obj: dict[str, Any], field: str) -> None:
    result = parse(j(obj))
    assert isinstance(result, ProtocolError)
    assert result.code == "invalid-message"
    assert f"'{field}'" in result.message


def test_id_length_limit_is_inclusive() -> None:
    assert parse(j({"type": "join", "roomId": "r" * MAX_ID_LENGTH, "userId": "u"})) == Join(
        "r" * MAX_ID_LENGTH, "u"
    )


@pytest.mark.parametrize("kind", ["hello", "room-joined", "peer-left", "error", "JOIN"])
def test_unknown_type(kind: str) -> None:
    assert error_code(j({"type": kind})) == "unknown-type"


def test_message_too_large() -> None:
    big = j({"type": "offer", "to": "b", "sdp": {"sdp": "x" * 2000}})
    assert error_code(big, max_size=1000) == "message-too-large"
    assert isinstance(parse(big, max_size=len(big)), Relay)


def test_protocol_error_becomes_error_message() -> None:
    err = ProtocolError("unknown-type", "nope")
    assert err.to_error() == ErrorMessage("unknown-type", "nope")
    assert err.to_dict()["code"] == "unknown-type"


# ----------------------------------------------------------------------------- serialisation


def test_server_messages_encode_to_their_dicts() -> None:
    cases: list[tuple[ServerMessage, dict[str, Any]]] = [
        (RoomJoined("r", ("a", "b")), {"type": "room-joined", "roomId": "r", "peers": ["a", "b"]}),
        (PeerJoined("a"), {"type": "peer-joined", "peerId": "a"}),
        (PeerLeft("a"), {"type": "peer-left", "peerId": "a"}),
        (
            ErrorMessage("not-joined", "join first"),
            {"type": "error", "code": "not-joined", "message": "join first"},
        ),
    ]
    for msg, expected in cases:
        assert msg.to_dict() == expected
        assert json.loads(msg.encode()) == expected


def _relayed(data: bytes, sender: str) -> Relayed:
    msg = parse(data)
    assert isinstance(msg, Relay)
    return Relayed(msg, sender, from_suffix(sender))


def test_relayed_is_spliced_and_keeps_the_payload_byte_for_byte() -> None:
    data = b'{"type":"ice-candidate","to":"bob","candidate":{"candidate":"c","seq":1.50}}  \n'
    out = _relayed(data, "alice").encode()
    assert out == data.rstrip()[:-1] + b',"from":"alice"}'
    assert json.loads(out)["from"] == "alice"


def test_forged_from_is_overwritten_and_not_spliced() -> None:
    data = b'{"type":"offer","from":"mallory","to":"bob","sdp":{"type":"offer"},"from":"eve"}'
    relayed = _relayed(data, "alice")
    assert relayed.source.head is None
    out = relayed.encode()
    assert out.count(b'"from"') == 1
    assert json.loads(out) == {
        "type": "offer",
        "to": "bob",
        "sdp": {"type": "offer"},
        "from": "alice",
    }


def test_nested_from_is_opaque_payload() -> None:
    data = j({"type": "offer", "to": "bob", "sdp": {"from": "x", "type": "offer"}})
    decoded = json.loads(_relayed(data, "alice").encode())
    assert decoded["from"] == "alice" and decoded["sdp"]["from"] == "x"


@pytest.mark.parametrize("sender", ['a"b', "ünï\u2028", "a\\b", "<script>"])
def test_from_suffix_escapes_the_user_id(sender: str) -> None:
    data = j({"type": "answer", "to": "x", "sdp": {}})
    assert json.loads(_relayed(data, sender).encode())["from"] == sender


def test_relayed_to_dict_matches_the_wire() -> None:
    relayed = _relayed(j({"type": "answer", "to": "x", "sdp": {"a": [1, None]}, "extra": 1}), "u")
    assert json.loads(relayed.encode()) == relayed.to_dict()


def test_surrounding_whitespace_is_fine_trailing_garbage_is_not() -> None:
    assert parse(b' \r\n{"type":"leave"}\t\n ') == Leave(None)
    assert error_code(b'{"type":"leave"} x') == "invalid-json"
    assert error_code(b'{"type":"leave"}{"type":"leave"}') == "invalid-json"
    relay = parse(b'{"type":"offer","to":"b","sdp":{}}\n\n')
    assert isinstance(relay, Relay) and relay.head == b'{"type":"offer","to":"b","sdp":{}'


# ----------------------------------------------------------------------------- tokens in join


def test_join_token_is_parsed_but_never_shown() -> None:
    msg = parse(j({"type": "join", "roomId": "r", "userId": "u", "token": "s3cret"}))
    assert msg == Join("r", "u", "s3cret")
    assert isinstance(msg, Join) and "s3cret" not in repr(msg) + repr(msg.to_dict())
    assert error_code(j({"type": "join", "roomId": "r", "userId": "u", "token": 5})) == (
        "invalid-message"
    )
    assert (
        error_code(j({"type": "join", "roomId": "r", "userId": "u", "token": "t" * 1025}))
        == "invalid-message"
    )


# ----------------------------------------------------------------------------- fuzzing

json_leaf = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
)
json_value = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=10,
)
# objects that look like messages, so the fuzzer reaches the validation branches
near_messages = st.fixed_dictionaries(
    {"type": st.sampled_from(["join", "leave", "offer", "answer", "ice-candidate", "x"])},
    optional={
        "roomId": json_value | st.text(max_size=130),
        "userId": json_value,
        "to": json_value | st.text(max_size=3),
        "sdp": json_value,
        "candidate": json_value,
        "from": json_value,
        "token": json_value,
    },
)


def _check(result: object, data: bytes) -> None:
    if isinstance(result, ProtocolError):
        assert result.code in ERROR_CODES and result.message
        return
    assert isinstance(result, Join | Leave | Relay)
    if isinstance(result, Relay):
        # what goes out must be JSON with exactly one, server-set "from"
        out = Relayed(result, "server-set", from_suffix("server-set")).encode()
        assert out.count(b'"from":"server-set"') >= 1
        decoded = json.loads(out)
        assert decoded["from"] == "server-set" and decoded["to"] == result.to
        assert {k: v for k, v in decoded.items() if k != "from"} == {
            k: v for k, v in json.loads(data).items() if k != "from"
        }


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    _check(parse(data), data)


@settings(max_examples=300, deadline=None)
@given(json_value | near_messages)
def test_arbitrary_json_never_raises_and_relays_are_well_formed(obj: Any) -> None:
    data = json.dumps(obj).encode()
    _check(parse(data), data)


@settings(max_examples=200, deadline=None)
@given(near_messages, st.text(max_size=6))
def test_surrounding_whitespace_and_text_frames(obj: Any, pad: str) -> None:
    ws = "".join(c for c in pad if c in " \t\r\n")
    text = ws + json.dumps(obj, ensure_ascii=False) + ws
    result = parse(text)
    _check(result, text.encode())
    assert type(result) is type(parse(text.encode()))
