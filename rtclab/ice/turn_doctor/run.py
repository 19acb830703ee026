"""The doctor's I/O: check each STUN/TURN URL step by step, every step in its own timeout,
all URLs at once (a dead server costs only its own timeouts).

Steps, in order, stopping at the first that fails (``credentials`` is always reported):
``resolve`` → ``reach`` → ``tls`` (turns:) → ``binding`` → ``auth`` → ``allocate`` →
``relay`` → ``credentials``. ``relay`` opens a second allocation on the same URL and sends
data both ways between the two relayed addresses, the path two relay-only peers take.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import os
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aioice import stun
from aioice.turn import make_integrity_key

from ..credentials import TurnSecret, turn_credentials
from .causes import (
    Cause,
    IceUrl,
    allocation_cause,
    auth_cause,
    certificate_name_matches,
    describe_seconds,
    permission_cause,
    username_expiry,
    utc_text,
)
from .report import DoctorReport, Step, merge
from .wire import StunLink

__all__ = ["DEFAULT_TIMEOUT", "doctor"]

#: Seconds each step may take before it is named as failed.
DEFAULT_TIMEOUT = 5.0
#: Credentials with less time left than this pass with a warning.
EXPIRY_WARNING = 600.0
#: A certificate expiring sooner than this passes with a warning.
CERT_WARNING = datetime.timedelta(days=1)
_UDP = 0x11000000  # REQUESTED-TRANSPORT: UDP (RFC 8656 §18.1)

if TYPE_CHECKING:
    from typing import TypeAlias

    from ..config import IceServer

    ServerSpec: TypeAlias = str | IceServer | Mapping[str, Any]


class _Failed(Exception):
    def __init__(self, cause: Cause, detail: str) -> None:
        super().__init__(detail)
        self.cause = cause
        self.detail = detail


@dataclass
class _Allocation:
    """One TURN allocation the doctor holds: its link and what authenticates its requests."""

    link: StunLink
    username: str
    realm: str
    nonce: bytes
    key: bytes
    relayed: tuple[str, int] = ("", 0)
    mapped: tuple[str, int] | None = None
    lifetime: int = 0
    response: stun.Message | None = None
    alloc_ms: float = 0.0

    async def request(self, method: stun.Method, **attributes: Any) -> stun.Message:
        """An authenticated request; a 438 (stale nonce) is retried once with the new nonce."""
        for attempt in range(2):
            message = stun.Message(method, stun.Class.REQUEST)
            message.attributes.update(attributes)
            message.attributes["USERNAME"] = self.username
            message.attributes["REALM"] = self.realm
            message.attributes["NONCE"] = self.nonce
            message.add_message_integrity(self.key)
            answer = await self.link.request(message)
            if answer.error_code == 438 and "NONCE" in answer.attributes:
                self.nonce = answer.attributes["NONCE"]
                if attempt == 0:
                    continue
                cause = auth_cause(438, self.username, time.time(), retried_stale=True)
                assert cause is not None
                raise _Failed(cause, "438 stale nonce twice in a row")
            return answer
        raise AssertionError("unreachable")


@dataclass
class _Check:
    """The steps of one URL."""

    url: IceUrl
    username: str | None
    credential: str | None
    timeout: float
    cafile: str | None
    realm: str | None
    context: ssl.SSLContext | None
    steps: list[Step] = field(default_factory=list)
    address: str = ""
    links: list[StunLink] = field(default_factory=list)
    allocations: list[_Allocation] = field(default_factory=list)
    took_ms: float | None = None
    """Set by a step whose time is part of another's wire exchange (allocate)."""

    async def step(
        self,
        name: str,
        action: Callable[[], Awaitable[str | tuple[str, str]]],
        on_timeout: Cause = Cause.TIMEOUT,
    ) -> bool:
        began = time.perf_counter()
        self.took_ms = None
        try:
            outcome = await asyncio.wait_for(action(), self.timeout)
        except _Failed as exc:
            cause, detail = exc.cause, exc.detail
        except asyncio.TimeoutError:
            cause, detail = on_timeout, f"no answer within {self.timeout:g} s"
        except (OSError, ConnectionError) as exc:
            cause, detail = Cause.UNREACHABLE, f"{type(exc).__name__}: {exc}"
        else:
            detail, fix = (outcome, "") if isinstance(outcome, str) else outcome
            ms = self.took_ms or (time.perf_counter() - began) * 1000
            self.steps.append(
                Step(name, self.url.url, self.url.transport, True, ms, detail, fix=fix)
            )
            return True
        ms = self.took_ms or (time.perf_counter() - began) * 1000
        self.steps.append(Step.failed(name, self.url.url, self.url.transport, ms, cause, detail))
        return False

    # ---------------------------------------------------------------- steps

    async def resolve(self) -> str:
        with contextlib.suppress(ValueError):
            self.address = str(ipaddress.ip_address(self.url.host))
            return f"{self.address} (an address, nothing to resolve)"
        loop = asyncio.get_running_loop()
        kind = socket.SOCK_DGRAM if self.url.transport == "udp" else socket.SOCK_STREAM
        try:
            infos = await loop.getaddrinfo(self.url.host, self.url.port, type=kind)
        except socket.gaierror as exc:
            raise _Failed(Cause.NAME_NOT_RESOLVED, f"{self.url.host}: {exc.strerror}") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        self.address = addresses[0]
        return f"{self.url.host} → {', '.join(addresses)}"

    async def _tcp_accepts(self, wait: float) -> bool:
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(self.address, self.url.port), wait
            )
        except (OSError, asyncio.TimeoutError):
            return False
        writer.close()
        return True

    async def reach(self) -> str:
        target = f"{self.address}:{self.url.port}"
        if self.url.transport != "udp":
            try:
                link = await StunLink.open(self.url.transport, self.address, self.url.port)
            except ConnectionRefusedError:
                raise _Failed(Cause.SERVER_DOWN, f"TCP {target}: connection refused") from None
            except OSError as exc:
                raise _Failed(Cause.UNREACHABLE, f"TCP {target}: {exc.strerror or exc}") from None
            self.links.append(link)
            return f"TCP connected to {target}"
        link = await StunLink.open("udp", self.address, self.url.port)
        self.links.append(link)
        began = time.perf_counter()
        try:
            await asyncio.wait_for(link.request(_binding()), self.timeout * 0.75)
        except (OSError, asyncio.TimeoutError) as exc:
            refused = isinstance(exc, ConnectionRefusedError)
            what = (
                "port unreachable (ICMP)" if refused else f"no answer in {self.timeout * 0.75:g} s"
            )
            if await self._tcp_accepts(self.timeout * 0.2):
                raise _Failed(
                    Cause.UDP_BLOCKED, f"UDP {target}: {what}, but TCP {target} accepts"
                ) from None
            cause = Cause.SERVER_DOWN if refused else Cause.UNREACHABLE
            raise _Failed(cause, f"UDP {target}: {what}; TCP refused too") from None
        return f"UDP {target} answered in {(time.perf_counter() - began) * 1000:.1f} ms"

    def tls_context(self) -> ssl.SSLContext:
        assert self.context is not None
        return self.context

    async def tls(self) -> str | tuple[str, str]:
        link = self.links[0]
        store = self.cafile or "the system store"
        try:
            ssl_object = await link.start_tls(self.tls_context(), self.url.host)
        except ssl.SSLCertVerificationError as exc:
            if exc.verify_code == 10:  # X509_V_ERR_CERT_HAS_EXPIRED
                raise _Failed(Cause.CERTIFICATE_EXPIRED, exc.verify_message) from None
            raise _Failed(
                Cause.CERTIFICATE_UNTRUSTED, f"{exc.verify_message} (checked against {store})"
            ) from None
        except (ssl.SSLError, ConnectionError) as exc:
            raise _Failed(Cause.TLS_FAILED, f"TLS handshake failed: {exc}") from None
        return _certificate_detail(ssl_object, self.url.host, store)

    async def binding(self) -> str | tuple[str, str]:
        try:
            answer = await asyncio.wait_for(self.links[0].request(_binding()), self.timeout * 0.8)
        except asyncio.TimeoutError:
            answer = None
        mapped = None if answer is None else answer.attributes.get("XOR-MAPPED-ADDRESS")
        if mapped is not None:
            return f"server-reflexive address {mapped[0]}:{mapped[1]}"
        seen = "no answer" if answer is None else f"answer {answer.error_code or 'without address'}"
        if self.url.is_turn:  # relaying does not need it: say so, do not fail the URL
            return f"{seen} to a Binding request", "this port serves TURN but not STUN Binding"
        raise _Failed(Cause.NO_BINDING, f"{seen} to a Binding request")

    async def allocate_on(self, link: StunLink) -> _Allocation:
        """Authenticate (401 challenge, then credentials) and allocate a UDP relay."""
        first = stun.Message(stun.Method.ALLOCATE, stun.Class.REQUEST)
        first.attributes["REQUESTED-TRANSPORT"] = _UDP
        challenge = await link.request(first)
        if challenge.message_class == stun.Class.RESPONSE:
            release = stun.Message(stun.Method.REFRESH, stun.Class.REQUEST)
            release.attributes["LIFETIME"] = 0
            with contextlib.suppress(OSError, asyncio.TimeoutError):
                await asyncio.wait_for(link.request(release), 1.0)
            raise _Failed(Cause.OPEN_RELAY, "the server allocated without asking for credentials")
        realm = challenge.attributes.get("REALM")
        nonce = challenge.attributes.get("NONCE")
        if challenge.error_code != 401 or realm is None or nonce is None:
            raise _Failed(
                Cause.UNKNOWN_REALM,
                f"answer {challenge.error_code} without realm/nonce to an unauthenticated "
                "Allocate (expected a 401 challenge)",
            )
        if self.username is None or self.credential is None:
            raise _Failed(
                Cause.NO_CREDENTIALS, f"401: the server wants credentials (realm {realm!r})"
            )
        if self.realm is not None and realm != self.realm:
            raise _Failed(
                Cause.UNKNOWN_REALM, f"the server's realm is {realm!r}, not {self.realm!r}"
            )
        key = make_integrity_key(self.username, realm, self.credential)
        alloc = _Allocation(link, self.username, realm, nonce, key)
        asked = time.perf_counter()
        answer = await alloc.request(stun.Method.ALLOCATE, **{"REQUESTED-TRANSPORT": _UDP})
        alloc.alloc_ms = (time.perf_counter() - asked) * 1000
        cause = auth_cause(answer.error_code, self.username, time.time())
        if cause is not None:
            reason = _error_text(answer)
            expiry = username_expiry(self.username)
            if cause is Cause.CREDENTIALS_EXPIRED and expiry is not None:
                ago = describe_seconds(time.time() - expiry)
                reason += f"; the username's expiry {utc_text(_utc(expiry))} passed {ago} ago"
            raise _Failed(cause, f"{reason} (user {self.username!r}, realm {realm!r})")
        alloc.response = answer
        if answer.message_class == stun.Class.RESPONSE:
            alloc.relayed = tuple(answer.attributes.get("XOR-RELAYED-ADDRESS", ("", 0)))  # type: ignore[assignment]
            alloc.mapped = answer.attributes.get("XOR-MAPPED-ADDRESS")
            alloc.lifetime = int(answer.attributes.get("LIFETIME", 0))
            self.allocations.append(alloc)
        return alloc

    async def auth(self) -> str:
        alloc = await self.allocate_on(self.links[0])
        self._first = alloc
        return f"credentials accepted for {alloc.username!r} in realm {alloc.realm!r}"

    async def allocate(self) -> str:
        alloc = self._first
        self.took_ms = alloc.alloc_ms  # the authenticated Allocate's round trip
        answer = alloc.response
        assert answer is not None
        if answer.message_class != stun.Class.RESPONSE:
            raise _Failed(allocation_cause(answer.error_code), _error_text(answer))
        seen = "" if alloc.mapped is None else f", seen from {alloc.mapped[0]}:{alloc.mapped[1]}"
        return (
            f"relayed address {alloc.relayed[0]}:{alloc.relayed[1]}, lifetime {alloc.lifetime} s"
            + seen
        )

    async def relay(self) -> str:
        """A second allocation, permissions both ways, and data echoed through both relays."""
        link = await StunLink.open(self.url.transport, self.address, self.url.port)
        self.links.append(link)
        if self.url.secure:
            await link.start_tls(self.tls_context(), self.url.host)
        second = await self.allocate_on(link)
        if second.response is None or second.response.message_class != stun.Class.RESPONSE:
            answer = second.response
            code = None if answer is None else answer.error_code
            raise _Failed(
                allocation_cause(code), f"a second allocation was refused: {_error_text(answer)}"
            )
        first = self._first
        for alloc, peer in ((first, second), (second, first)):
            answer = await alloc.request(
                stun.Method.CREATE_PERMISSION, **{"XOR-PEER-ADDRESS": (peer.relayed[0], 0)}
            )
            if answer.message_class != stun.Class.RESPONSE:
                raise _Failed(
                    permission_cause(answer.error_code),
                    f"CreatePermission for peer {peer.relayed[0]}: {_error_text(answer)}",
                )
        rtts = [await _echo(first, second), await _echo(second, first)]
        a, b = first.relayed, second.relayed
        return (
            f"echoed both ways, RTT {min(rtts):.1f} ms through the relay "
            f"({a[0]}:{a[1]} ⇄ {b[0]}:{b[1]})"
        )

    def credentials(self) -> str | tuple[str, str]:
        expiry = username_expiry(self.username)
        if expiry is None:
            return "long-term credentials: the username carries no expiry"
        left = expiry - time.time()
        if left <= 0:
            raise _Failed(
                Cause.CREDENTIALS_EXPIRED,
                f"expired {describe_seconds(left)} ago ({utc_text(_utc(expiry))})",
            )
        detail = f"expires in {describe_seconds(left)} ({utc_text(_utc(expiry))})"
        if left < EXPIRY_WARNING:
            return detail, "mint fresh credentials before a call outlives them"
        return detail

    async def close(self) -> None:
        """Release the allocations (Refresh with lifetime 0), then the connections."""

        async def release(alloc: _Allocation) -> None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(alloc.request(stun.Method.REFRESH, LIFETIME=0), 1.0)

        await asyncio.gather(*(release(a) for a in self.allocations))
        for link in self.links:
            link.close()

    async def run(self) -> DoctorReport:
        kind = "turn" if self.url.is_turn else "stun"
        report = DoctorReport(steps=self.steps, urls=[self.url.url], kinds={self.url.url: kind})
        try:
            ok = await self.step("resolve", self.resolve)
            ok = ok and await self.step("reach", self.reach, Cause.UNREACHABLE)
            if self.url.secure:
                ok = ok and await self.step("tls", self.tls, Cause.TLS_FAILED)
            ok = ok and await self.step("binding", self.binding, Cause.NO_BINDING)
            if self.url.is_turn:
                ok = ok and await self.step("auth", self.auth)
                ok = ok and await self.step("allocate", self.allocate)
                ok = ok and await self.step("relay", self.relay, Cause.NO_RELAY_ECHO)
                if self.username is not None:

                    async def credentials() -> str | tuple[str, str]:
                        return self.credentials()

                    await self.step("credentials", credentials)
        finally:
            await self.close()
        return report

    _first: _Allocation = field(init=False)


async def _echo(sender: _Allocation, receiver: _Allocation) -> float:
    """Send from one relay to the other and back; the round trip in ms (resent over UDP)."""
    payload = os.urandom(12)
    began = time.perf_counter()

    def send(alloc: _Allocation, to: tuple[str, int], data: bytes) -> None:
        message = stun.Message(stun.Method.SEND, stun.Class.INDICATION)
        message.attributes["XOR-PEER-ADDRESS"] = to
        message.attributes["DATA"] = data
        alloc.link.send(message)

    async def wait_for(alloc: _Allocation, data: bytes) -> tuple[str, int]:
        while True:
            peer, got = await alloc.link.received.get()
            if got == data:
                return peer

    async def resend(alloc: _Allocation, to: tuple[str, int], data: bytes) -> None:
        while True:
            send(alloc, to, data)
            await asyncio.sleep(0.2)

    for alloc, peer, data in (
        (sender, receiver, payload),
        (receiver, sender, payload[::-1]),
    ):
        repeat = asyncio.ensure_future(resend(alloc, peer.relayed, data))
        try:
            await wait_for(peer, data)
        finally:
            repeat.cancel()
    return (time.perf_counter() - began) * 1000


def _binding() -> stun.Message:
    message = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    message.add_fingerprint()
    return message


def _error_text(answer: stun.Message | None) -> str:
    if answer is None:
        return "no answer"
    code, reason = answer.attributes.get("ERROR-CODE", (answer.error_code, ""))
    return f"{code} {reason}".strip()


def _utc(seconds: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)


def _certificate_detail(ssl_object: ssl.SSLObject, host: str, store: str) -> str | tuple[str, str]:
    from cryptography import x509

    der = ssl_object.getpeercert(binary_form=True)
    if der is None:
        raise _Failed(Cause.TLS_FAILED, "the server sent no certificate")
    cert = x509.load_der_x509_certificate(der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = san.get_values_for_type(x509.DNSName)
        ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        dns, ips = [], []
    names = ", ".join([*dns, *ips]) or "no subjectAltName"
    if not certificate_name_matches(host, dns, ips):
        raise _Failed(
            Cause.CERTIFICATE_HOSTNAME_MISMATCH,
            f"the certificate is for {names}, not {host}",
        )
    ends = cert.not_valid_after_utc
    left = ends - datetime.datetime.now(datetime.timezone.utc)
    detail = (
        f"{ssl_object.version()}, for {names}, expires in "
        f"{describe_seconds(left.total_seconds())} ({utc_text(ends)}), chain trusted by {store}"
    )
    if left < CERT_WARNING:
        return detail, "renew the certificate soon"
    return detail


def _targets(
    servers: ServerSpec | Sequence[ServerSpec],
    username: str | None,
    credential: str | None,
    secret: str | TurnSecret | None,
    user: str,
) -> list[tuple[IceUrl, str | None, str | None]]:
    """(URL, username, credential) per URL. IceServer is duck-typed (``url_list``) so that
    ``rtclab turn-check`` does not import aiortc just to check a TURN server."""
    single = isinstance(servers, (str, Mapping)) or hasattr(servers, "url_list")
    items: Sequence[ServerSpec] = [servers] if single else servers  # type: ignore[list-item,assignment]
    out: list[tuple[IceUrl, str | None, str | None]] = []
    for item in items:
        if isinstance(item, str):
            urls, name, password = [item], username, credential
        elif isinstance(item, Mapping):
            raw = item["urls"]
            urls = [raw] if isinstance(raw, str) else list(raw)
            name, password = item.get("username"), item.get("credential")
        else:
            urls, name, password = item.url_list, item.username, item.credential
        for url in urls:
            parsed = IceUrl.parse(url)
            if parsed.is_turn and secret is not None and name is None:
                creds = turn_credentials(secret, user, url, ttl=3600)
                out.append((parsed, creds.username, creds.credential))
            else:
                out.append((parsed, name, password))
    return out


async def doctor(
    servers: ServerSpec | Sequence[ServerSpec],
    *,
    username: str | None = None,
    credential: str | None = None,
    secret: str | TurnSecret | None = None,
    user: str = "doctor",
    cafile: str | os.PathLike[str] | None = None,
    realm: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> DoctorReport:
    """Check STUN/TURN servers step by step and name what is wrong; see :class:`DoctorReport`.

    ``servers`` are URLs, :class:`IceServer` objects or ``RTCIceServer`` dicts; plain URLs
    use ``username``/``credential``, or TURN REST credentials minted for ``user`` from the
    shared ``secret`` (coturn ``use-auth-secret``). ``cafile`` is trusted instead of the
    system store for ``turns:``; ``realm`` is the realm the credentials were made for.
    Every step fails by name within ``timeout`` seconds; URLs are checked concurrently.
    """
    if timeout <= 0:
        raise ValueError("timeout must be positive (seconds)")
    targets = _targets(servers, username, credential, secret, user)
    if not targets:
        raise ValueError("give at least one stun:/turn:/turns: URL")
    store = None if cafile is None else os.fspath(cafile)
    context = None
    if any(url.secure for url, _, _ in targets):
        context = ssl.create_default_context(cafile=store)  # FileNotFoundError names the file
        context.check_hostname = False  # checked by us, to name it apart from the chain
    checks = [
        _Check(url, name, password, timeout, store, realm, context)
        for url, name, password in targets
    ]
    return merge(await asyncio.gather(*(check.run() for check in checks)))
