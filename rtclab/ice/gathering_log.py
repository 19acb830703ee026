"""What happened while one connection gathered and checked: candidate times, the server
behind each server-reflexive and relayed candidate, and every server's named failure.

Filled by the hooks of :mod:`rtclab.ice.gathering`, read by the peer (events, the diagnosis
of a failed connection) and by :func:`rtclab.ice.inspect.candidate_rows`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["CandidateKey", "EventCallback", "GatheringLog", "IceFailure", "candidate_key"]

log = logging.getLogger(__name__)

EventCallback = Callable[[str, Any], None]
CandidateKey = tuple[str, str, int]  # (protocol, address, port)


@dataclass(frozen=True)
class IceFailure:
    """A named gathering/connectivity problem: ``kind`` for code, ``message`` for people."""

    kind: str  # turn-unauthorized | turn-forbidden | turn-unreachable | turn-tls | turn-error
    #            | stun-unreachable | stun-error | turn-unsupported
    url: str | None
    message: str
    t_ms: float


class GatheringLog:
    """What happened while one connection gathered and checked, filled by the aioice hooks.

    Candidate times are milliseconds since :meth:`begin`. Host candidates get the time their
    sockets were bound (the moment aioice started its server queries, or the end of
    gathering when there were none); server-reflexive and relayed candidates the time their
    query answered; remote candidates the time they reached us (negative when they came
    before our own gathering began, e.g. the candidates of an offer we answer).
    """

    def __init__(self, on_event: EventCallback | None = None) -> None:
        self.on_event = on_event
        self.started: float | None = None
        self.finished: float | None = None
        self.host_bound: float | None = None
        self.failures: list[IceFailure] = []
        self.turn_urls: list[str] = []
        """TURN URLs that allocated, in the order they answered."""
        self.stun_urls: list[str] = []
        self.late: list[str] = []
        """Server URLs that answered after gathering had completed (their candidates unused)."""
        self.local_times: dict[CandidateKey, float] = {}
        self.remote_seen: dict[CandidateKey, float] = {}  # monotonic arrival times
        self.servers: dict[CandidateKey, str] = {}
        """Which STUN/TURN URL produced each server-reflexive/relayed candidate."""
        self.relay_protocols: dict[CandidateKey, str] = {}

    # --- time ---------------------------------------------------------------------------

    def begin(self) -> None:
        if self.started is None:
            self.started = time.monotonic()

    def elapsed_ms(self, at: float | None = None) -> float:
        if self.started is None:
            return 0.0
        return ((time.monotonic() if at is None else at) - self.started) * 1000

    # --- filled by the hooks ------------------------------------------------------------

    def _emit(self, event: str, value: Any) -> None:
        if self.on_event is not None:
            try:
                self.on_event(event, value)
            except Exception:
                log.exception("gathering event listener failed")

    def fail(self, kind: str, url: str | None, message: str) -> IceFailure:
        failure = IceFailure(kind, url, message, round(self.elapsed_ms(), 1))
        if not any(f.kind == kind and f.url == url for f in self.failures):
            self.failures.append(failure)
            self._emit("turn-failed" if kind.startswith("turn") else "stun-failed", message)
        return failure

    def _server_candidate(
        self, candidate: Any, url: str, relay_protocol: str | None, at_ms: float | None = None
    ) -> None:
        """``url`` answered with ``candidate`` (a relay one when ``relay_protocol`` is set)
        at ``at_ms`` (now if None)."""
        key = candidate_key(candidate)
        self.local_times.setdefault(key, round(self.elapsed_ms(), 1) if at_ms is None else at_ms)
        self.servers.setdefault(key, url)  # a srflx address two STUN servers agree on: the first
        if relay_protocol is not None:
            self.relay_protocols[key] = relay_protocol
            self.turn_urls.append(url)
            self._emit("turn-allocated", f"{url} -> {candidate.host}:{candidate.port}")
        elif url not in self.stun_urls:
            self.stun_urls.append(url)

    def _late(self, url: str, what: str) -> None:
        """``url`` answered after gathering had completed without it: not used."""
        self.late.append(url)
        self._emit(
            "ice-server-late",
            f"{url} answered ({what}) at {self.elapsed_ms():.0f} ms, after gathering had "
            "completed: not used",
        )

    @property
    def turn_url(self) -> str | None:
        """The first TURN URL that allocated (each live one gives a relay candidate)."""
        return self.turn_urls[0] if self.turn_urls else None

    @property
    def stun_url(self) -> str | None:
        return self.stun_urls[0] if self.stun_urls else None

    def _mark_host_bound(self) -> None:
        if self.host_bound is None:
            self.host_bound = time.monotonic()

    # --- filled by the peer -------------------------------------------------------------

    def end(self, local: Iterable[Any]) -> None:
        """Gathering finished: stamp host candidates, announce every candidate once."""
        self.finished = time.monotonic()
        bound = self.host_bound or self.finished
        for candidate in local:
            key = candidate_key(candidate)
            if key not in self.local_times:
                self.local_times[key] = round(self.elapsed_ms(bound), 1)
            via = self.servers.get(key)
            self._emit(
                "ice-candidate-gathered",
                f"{candidate.type} {key[0]} {key[1]}:{key[2]}"
                + (f" via {via}" if via else "")
                + f" at {self.local_times[key]:g} ms",
            )

    def stamp_remote(self, remote: Iterable[Any]) -> None:
        """Note the arrival time of remote candidates not seen before."""
        now = time.monotonic()
        for candidate in remote:
            self.remote_seen.setdefault(candidate_key(candidate), now)

    def remote_ms(self, candidate: Any) -> float | None:
        """When a remote candidate reached us, in ms since our gathering began (or None)."""
        seen = self.remote_seen.get(candidate_key(candidate))
        if seen is None or self.started is None:
            return None
        return round(self.elapsed_ms(seen), 1)

    def local_ms(self, candidate: Any) -> float | None:
        return self.local_times.get(candidate_key(candidate))

    def first_failure(self, prefix: str = "turn") -> IceFailure | None:
        for failure in self.failures:
            if failure.kind.startswith(prefix):
                return failure
        return None


def candidate_key(candidate: Any) -> CandidateKey:
    """(protocol, address, port) of an aioice or rtclab candidate."""
    protocol = getattr(candidate, "transport", None) or getattr(candidate, "protocol", "udp")
    address = getattr(candidate, "host", None) or getattr(candidate, "address", "")
    return (str(protocol).lower(), str(address), int(getattr(candidate, "port", 0)))
