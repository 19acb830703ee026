"""TURN REST credentials (coturn ``use-auth-secret``) and the HTTP endpoint that hands them out.

The scheme is the write-up's: ``username = "<expiry-unix>:<user>"`` and
``credential = base64(HMAC-SHA1(secret, username))``. The TURN server, knowing the same
secret, recomputes the credential and checks the expiry, so credentials are minted without
talking to it and stop working by themselves. Pure code, no I/O, apart from the HTTP handler
which only formats a response.

The shared secret never leaves this module in clear: :class:`TurnSecret` hides it from
``repr``/``str`` (so it cannot slip into a log line, an events frame or a notebook output),
and the endpoint logs nothing but the user name.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from websockets.http11 import Request, Response

    from .config import IceServer

__all__ = [
    "DEFAULT_TTL",
    "TURN_CREDENTIALS_PATH",
    "TurnCredentials",
    "TurnSecret",
    "make_credentials_handler",
    "turn_credential",
    "turn_credentials",
    "turn_username",
]

log = logging.getLogger(__name__)

#: Lifetime of minted credentials, as in the write-up (24 h).
DEFAULT_TTL = 24 * 60 * 60
#: Where :func:`make_credentials_handler` is usually mounted on the signaling server.
TURN_CREDENTIALS_PATH = "/api/turn-credentials"


class TurnSecret:
    """The coturn ``static-auth-secret``, wrapped so that printing it never reveals it.

    ``repr()``/``str()`` show ``TurnSecret('***')``; :meth:`reveal` is the one explicit way
    to get the value (for the coturn config file and the HMAC).
    """

    __slots__ = ("_value",)

    def __init__(self, value: str | bytes | TurnSecret | None = None) -> None:
        text: str
        if isinstance(value, TurnSecret):
            text = value.reveal()
        elif value is None:
            text = secrets.token_urlsafe(32)
        elif isinstance(value, bytes):
            text = value.decode()
        else:
            text = value
        if not text:
            raise ValueError("the TURN secret must not be empty")
        if any(c in text for c in "\r\n\0"):
            raise ValueError("the TURN secret must be one line (it goes into a config file)")
        self._value: str = text

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "TurnSecret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TurnSecret) and hmac.compare_digest(
            self._value.encode(), other.reveal().encode()
        )

    def __hash__(self) -> int:
        return hash(("TurnSecret", hashlib.sha256(self._value.encode()).digest()))


def turn_username(user: str, expiry: int) -> str:
    """``"<expiry-unix>:<user>"``: coturn reads the expiry from before the first colon."""
    if not user:
        raise ValueError("user must not be empty")
    return f"{int(expiry)}:{user}"


def turn_credential(secret: str | TurnSecret, username: str) -> str:
    """``base64(HMAC-SHA1(secret, username))``: what coturn's ``use-auth-secret`` expects."""
    key = secret.reveal() if isinstance(secret, TurnSecret) else secret
    digest = hmac.new(key.encode(), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


@dataclass(frozen=True)
class TurnCredentials:
    """Time-limited TURN credentials for one user, and the URLs they are good for."""

    urls: tuple[str, ...]
    username: str
    credential: str = field(repr=False)
    expires_at: int
    ttl: int

    @property
    def user(self) -> str:
        return self.username.split(":", 1)[1]

    @property
    def expired(self) -> bool:
        return self.expires_at <= time.time()

    def ice_server(self, urls: str | Sequence[str] | None = None) -> IceServer:
        """An :class:`IceServer` for these credentials (all URLs, or the ones given)."""
        from .config import IceServer  # aiortc is loaded only when one is wanted

        chosen: str | Sequence[str] = self.urls if urls is None else urls
        return IceServer(urls=chosen, username=self.username, credential=self.credential)

    def ice_servers(self) -> tuple[IceServer, ...]:
        """One :class:`IceServer` per URL, in order.

        aiortc uses one TURN URL per connection; :mod:`rtclab.ice.config` tries the list in
        order, so one entry per URL keeps that order visible in ``IceConfig.ice_servers``.
        """
        return tuple(self.ice_server(url) for url in self.urls)

    def to_dict(self) -> dict[str, Any]:
        """The endpoint's JSON: ``iceServers`` for ``new RTCPeerConnection``, plus ``ttl``."""
        return {
            "iceServers": [self.ice_server().to_dict()],
            "username": self.username,
            "credential": self.credential,
            "urls": list(self.urls),
            "ttl": self.ttl,
            "expiresAt": self.expires_at,
        }


def turn_credentials(
    secret: str | TurnSecret,
    user: str,
    urls: str | Sequence[str],
    *,
    ttl: int = DEFAULT_TTL,
    now: float | None = None,
) -> TurnCredentials:
    """Mint credentials for ``user`` valid ``ttl`` seconds from ``now`` (a negative ``ttl``
    gives an already expired credential, which is how the tests provoke coturn's 401)."""
    if ":" in user:
        raise ValueError("user must not contain ':' (it separates expiry and user)")
    issued = time.time() if now is None else now
    expiry = int(issued) + int(ttl)
    username = turn_username(user, expiry)
    url_tuple = (urls,) if isinstance(urls, str) else tuple(urls)
    if not url_tuple:
        raise ValueError("give at least one turn:/turns: URL")
    return TurnCredentials(
        urls=url_tuple,
        username=username,
        credential=turn_credential(secret, username),
        expires_at=expiry,
        ttl=int(ttl),
    )


def _bearer(request: Request) -> str | None:
    value = request.headers.get("Authorization")
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def make_credentials_handler(
    secret: str | TurnSecret,
    urls: str | Sequence[str] | Callable[[], Sequence[str]],
    token: str | Callable[[str], str | None],
    *,
    ttl: int = DEFAULT_TTL,
) -> Callable[[Request], Response]:
    """An HTTP handler for ``GET /api/turn-credentials`` (see ``SignalingServer.add_route``).

    ``token`` is either the one bearer token every client presents (the user is then taken
    from ``?user=``, default ``"lab"``), or a function mapping a token to its user (``None``
    = refused): the write-up's ``requireAuth``. Without a valid ``Authorization: Bearer``
    header the answer is 401 and nothing is minted. ``urls`` may be a function so that the
    handler follows a coturn restarted on new ports.
    """
    from urllib.parse import parse_qs, urlsplit

    from ..signaling.http import http_response

    wrapped = TurnSecret(secret)
    resolve: Callable[[str], str | None]
    if isinstance(token, str):
        if not token:
            raise ValueError("the bearer token must not be empty")
        expected = token.encode()

        def resolve_shared(presented: str) -> str | None:
            return "" if hmac.compare_digest(presented.encode(), expected) else None

        resolve = resolve_shared
    else:
        resolve = token

    def current_urls() -> Sequence[str]:
        if callable(urls):
            return urls()
        return (urls,) if isinstance(urls, str) else urls

    challenge = {"WWW-Authenticate": 'Bearer realm="rtclab"'}

    def handler(request: Request) -> Response:
        presented = _bearer(request)
        user = resolve(presented) if presented is not None else None
        if user is None:
            log.info("turn-credentials: refused a request without a valid bearer token")
            return http_response(
                401,
                json.dumps({"error": "unauthorized", "message": "send Authorization: Bearer"}),
                "application/json",
                challenge,
            )
        if not user:
            query = parse_qs(urlsplit(request.path).query)
            user = (query.get("user") or ["lab"])[0]
        try:
            creds = turn_credentials(wrapped, user, list(current_urls()), ttl=ttl)
        except ValueError as exc:
            return http_response(
                400, json.dumps({"error": "bad-request", "message": str(exc)}), "application/json"
            )
        log.info("turn-credentials: issued for user %r, valid %d s", creds.user, ttl)
        return http_response(200, json.dumps(creds.to_dict()), "application/json")

    return handler
