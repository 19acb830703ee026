"""The pure failure diagnosis: each missing step is named with what to fix."""

from __future__ import annotations

from dataclasses import replace

from rtclab.peer.diagnosis import ConnectionFacts, diagnose

CHECKS_FAILED = ConnectionFacts(
    remote="bob",
    role="offerer",
    has_local_description=True,
    has_remote_description=True,
    local_candidates=2,
    remote_candidates=3,
    turn_failure=None,
    ice_transport_policy="all",
    has_turn=False,
    interfaces=("127.0.0.1",),
)


def test_no_description_at_all_is_a_signaling_failure() -> None:
    facts = replace(CHECKS_FAILED, has_local_description=False, has_remote_description=False)
    assert diagnose(facts, "x") == (
        "x: no local description exchanged with bob (signaling did not complete)"
    )
    answerer = replace(facts, role="answerer")
    assert "no offer exchanged with bob" in diagnose(answerer, "x")


def test_nothing_gathered_names_the_cause() -> None:
    none = replace(CHECKS_FAILED, local_candidates=0)
    assert diagnose(none, "x") == (
        "x: no local ICE candidates were gathered (check the interfaces "
        "(('127.0.0.1',)) and ICE servers)"
    )
    relay = replace(none, ice_transport_policy="relay")
    assert "ice_transport_policy='relay' needs a TURN server" in diagnose(relay, "x")
    turn = replace(relay, has_turn=True, turn_failure="TURN 401: wrong credentials")
    assert diagnose(turn, "x") == (
        "x: no local ICE candidates were gathered: TURN 401: wrong credentials"
    )
    echo = replace(none, role="answerer", remote_candidates=0)
    assert "bob offered no ICE candidates, so none were gathered here" in diagnose(echo, "x")


def test_missing_answer_or_remote_candidates() -> None:
    no_answer = replace(CHECKS_FAILED, has_remote_description=False)
    assert diagnose(no_answer, "x") == "x: no answer from bob (signaling did not complete)"
    silent = replace(CHECKS_FAILED, remote_candidates=0)
    assert diagnose(silent, "x") == "x: bob sent no ICE candidates"


def test_failed_checks_count_both_sides_and_add_a_turn_failure() -> None:
    assert diagnose(CHECKS_FAILED, "not connected after 10s") == (
        "not connected after 10s: ICE connectivity checks failed (2 local x 3 remote "
        "candidates, no pair succeeded)"
    )
    with_turn = replace(CHECKS_FAILED, turn_failure="TURN allocation timed out")
    assert diagnose(with_turn, "x").endswith("no pair succeeded); TURN allocation timed out")
