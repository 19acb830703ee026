"""Fast loss detection and recovery policy — pure logic, no I/O.

aiortc has no ``disconnected`` state and notices a vanished remote only after ~33 s of
failed consent checks (then ``closed``, not ``failed``), and it has no ICE restart. So a
peer watches the bytes arriving on each connection's transports: when nothing arrives for
``loss_timeout`` the link is *lost*; if it stays lost for ``restart_after`` more, the peer
rebuilds the connection (fresh RTCPeerConnection + renegotiation), retrying with backoff
while the remote is still in the room. Heartbeats on the ``cursors`` channel keep
data-only connections talking so that silence really means loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True)
class Resilience:
    """How a peer detects a lost link and brings it back. ``enabled=False`` turns it off."""

    enabled: bool = True
    loss_timeout: float = 2.0
    restart_after: float = 2.0
    heartbeat_interval: float = 1.0
    check_interval: float = 0.25
    backoff: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)
    #: how long a peer whose signaling connection dropped keeps trying to join again
    rejoin_timeout: float = 60.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait before restart attempt ``attempt`` (0-based), capped at the last."""
        if not self.backoff:
            return 0.0
        return self.backoff[min(attempt, len(self.backoff) - 1)]


class Health(str, Enum):
    OK = "ok"
    LOST = "lost"


class LivenessTracker:
    """Feed it (time, bytes received so far); it says when the link is lost or back.

    ``observe`` returns ``"lost"``, ``"recovered"``, ``"restart"`` (lost long enough to
    rebuild) or ``None``. ``"restart"`` is returned once per loss.
    """

    def __init__(self, policy: Resilience, now: float, rx_bytes: int = 0) -> None:
        self.policy = policy
        self.health = Health.OK
        self.last_rx_bytes = rx_bytes
        self.last_change = now
        self.lost_at: float | None = None
        self._restart_said = False

    def observe(self, now: float, rx_bytes: int) -> str | None:
        if rx_bytes != self.last_rx_bytes:
            self.last_rx_bytes = rx_bytes
            self.last_change = now
            if self.health is Health.LOST:
                self.health = Health.OK
                self.lost_at = None
                self._restart_said = False
                return "recovered"
            return None
        silent = now - self.last_change
        if self.health is Health.OK and silent >= self.policy.loss_timeout:
            self.health = Health.LOST
            self.lost_at = now
            return "lost"
        if (
            self.health is Health.LOST
            and not self._restart_said
            and self.lost_at is not None
            and now - self.lost_at >= self.policy.restart_after
        ):
            self._restart_said = True
            return "restart"
        return None


def is_restarter(me: str, remote: str) -> bool:
    """Exactly one side rebuilds a lost connection (no offer glare): the smaller name."""
    return me < remote
