"""Connection rules that need a clock or a request: rate limit, liveness, Origin, credentials.

Pure like :mod:`.rooms`: time comes in as ``now`` (any monotonic seconds), requests as plain
values, so every rule is tested without sockets or sleeping, and the server decides only
*when* to ask.
"""

from __future__ import annotations

import hmac
from collections.abc import Collection, Mapping
from typing import Final, Literal
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "Liveness",
    "TokenBucket",
    "credential_from_request",
    "liveness",
    "origin_allowed",
    "room_credential_ok",
    "token_matches",
]

Liveness = Literal["ok", "ping", "dead"]


class TokenBucket:
    """Per-connection message rate limit: ``burst`` messages at once, ``rate`` per second after.

    A token bucket rather than a fixed window so that a peer's legitimate burst (an offer and
    its trickled candidates to every member of a mesh, a few hundred messages at join time)
    passes, while a sustained flood is cut to ``rate``. Two float operations per message.
    """

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one; ``False`` means refuse this message."""
        tokens = self.tokens + (now - self.stamp) * self.rate
        if tokens > self.burst:
            tokens = self.burst
        self.stamp = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return True
        self.tokens = tokens
        return False


def liveness(
    now: float, last_seen: float, last_ping: float, interval: float, timeout: float
) -> Liveness:
    """What to do with a connection last heard from at ``last_seen``.

    ``"ping"`` after ``interval`` s of silence (once per silence: ``last_ping`` is when we
    last pinged, ``-inf`` if never), ``"dead"`` after ``interval + timeout`` s: a client
    that answered nothing, not even the ping every WebSocket stack answers by itself, is
    gone (laptop lid closed, network dropped) and its room must hear ``peer-left``.
    """
    silent = now - last_seen
    if silent >= interval + timeout:
        return "dead"
    if silent >= interval and last_ping < last_seen + interval:
        return "ping"
    return "ok"


def origin_allowed(origin: str | None, allowed: Collection[str | None] | None) -> bool:
    """Origin allow-list, as websockets spells it: ``None`` allows anything, and a ``None``
    *in* the list admits clients that send no Origin (non-browser ones, like aiortc peers).

    Browsers always send Origin and scripts cannot forge it, so this stops other web
    pages from using a visitor's browser to reach the server (cross-site WebSocket
    hijacking); it does not authenticate non-browser clients: that is the token's job.
    """
    if allowed is None:
        return True
    if origin is None:
        return None in allowed
    return origin in allowed or origin.lower() in allowed


_BEARER: Final = "bearer "


def credential_from_request(path: str, authorization: str | None) -> str | None:
    """The token a client presented during the handshake, if any.

    ``Authorization: Bearer <token>`` (non-browser clients) wins over ``?token=<token>`` in
    the URL (browsers: their WebSocket API cannot set headers). Browsers should prefer the
    ``token`` field of ``join``, which stays out of URLs, proxies' access logs and history.
    ``Sec-WebSocket-Protocol`` is deliberately not used: the server would have to echo the
    secret back as the chosen subprotocol, and its character set excludes common tokens.
    """
    if authorization is not None and authorization[:7].lower() == _BEARER:
        return authorization[7:].strip() or None
    query = urlsplit(path).query
    if not query:
        return None
    values = parse_qs(query).get("token")
    return values[0] if values else None


def token_matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison, so response timing does not leak the token byte by byte."""
    if given is None:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def room_credential_ok(
    room_id: str,
    token: str | None,
    *,
    server_token: str | None,
    room_tokens: Mapping[str, str],
) -> bool:
    """Whether ``token`` may join ``room_id``: a room with its own token needs exactly that
    one (so a room can be handed out without the server token); any other room needs the
    server token when one is set; with neither, everyone may join."""
    expected = room_tokens.get(room_id)
    if expected is None:
        expected = server_token
    return expected is None or token_matches(token, expected)
