"""Why a connection failed, in words: a pure function of what the connection got that far.

Kept apart from the I/O so each branch (no description, no candidates, relay without TURN,
failed checks) is unit-tested without starting a connection.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ConnectionFacts:
    """What one connection reached, read off its ``RTCPeerConnection`` and gathering log."""

    remote: str
    role: str  # "offerer" | "answerer"
    has_local_description: bool
    has_remote_description: bool
    local_candidates: int  # of one ICE transport (see connection.sdp_candidate_count)
    remote_candidates: int  # in the remote description plus trickled ones
    turn_failure: str | None  # every TURN server's failure, in words (``; ``-joined)
    ice_transport_policy: str  # "all" | "relay"
    has_turn: bool
    interfaces: Sequence[str] | None  # None: every interface


def diagnose(facts: ConnectionFacts, what: str) -> str:
    """Name the first missing step (signaling, gathering, candidates, checks), so a failure
    says what to fix; ``what`` is the symptom, e.g. ``"not connected after 10s"``."""
    f = facts
    if not f.has_local_description and not f.has_remote_description:
        step = "offer" if f.role == "answerer" else "local description"
        return f"{what}: no {step} exchanged with {f.remote} (signaling did not complete)"
    if f.has_local_description and f.local_candidates == 0:
        if f.turn_failure is not None:
            return f"{what}: no local ICE candidates were gathered: {f.turn_failure}"
        if f.role == "answerer" and f.has_remote_description and f.remote_candidates == 0:
            # aioice drops a component the remote ended without candidates: no gathering
            return (
                f"{what}: {f.remote} offered no ICE candidates, so none were gathered "
                "here either (see its own failure reason)"
            )
        hint = (
            "ice_transport_policy='relay' needs a TURN server in ice_servers"
            if f.ice_transport_policy == "relay" and not f.has_turn
            else f"check the interfaces ({f.interfaces}) and ICE servers"
        )
        return f"{what}: no local ICE candidates were gathered ({hint})"
    if not f.has_remote_description:
        return f"{what}: no answer from {f.remote} (signaling did not complete)"
    if f.remote_candidates == 0:
        return f"{what}: {f.remote} sent no ICE candidates"
    also = f"; {f.turn_failure}" if f.turn_failure is not None else ""
    return (
        f"{what}: ICE connectivity checks failed ({f.local_candidates} local x "
        f"{f.remote_candidates} remote candidates, no pair succeeded){also}"
    )
