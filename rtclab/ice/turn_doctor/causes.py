"""Pure parts of the TURN doctor: ICE server URLs, named causes with their fixes, and the
classification of STUN/TURN answers into causes. No I/O, so every rule is unit-tested.

A cause is a stable string (:class:`Cause`): tests, notebooks and scripts compare against
it, while the ``fix`` text beside it is for people and may be reworded.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
from dataclasses import dataclass
from enum import Enum
from typing import Literal
from urllib.parse import unquote

__all__ = [
    "Cause",
    "IceUrl",
    "Transport",
    "allocation_cause",
    "auth_cause",
    "certificate_name_matches",
    "describe_seconds",
    "permission_cause",
    "username_expiry",
]

Transport = Literal["udp", "tcp", "tls"]


class Cause(str, Enum):
    """Why a step failed, one name per diagnosis (the value is what frames show)."""

    BAD_URL = "bad-url"
    NAME_NOT_RESOLVED = "name-not-resolved"
    SERVER_DOWN = "server-down"
    UDP_BLOCKED = "udp-blocked"
    UNREACHABLE = "unreachable"
    TLS_FAILED = "tls-handshake-failed"
    CERTIFICATE_UNTRUSTED = "certificate-untrusted"
    CERTIFICATE_EXPIRED = "certificate-expired"
    CERTIFICATE_HOSTNAME_MISMATCH = "certificate-hostname-mismatch"
    NO_BINDING = "no-binding-response"
    NO_CREDENTIALS = "no-credentials"
    OPEN_RELAY = "open-relay"
    UNKNOWN_REALM = "unknown-realm"
    WRONG_CREDENTIALS = "wrong-credentials"
    CREDENTIALS_EXPIRED = "credentials-expired"
    STALE_NONCE = "stale-nonce"
    QUOTA_REACHED = "allocation-quota-reached"
    INSUFFICIENT_CAPACITY = "insufficient-capacity"
    ALLOCATION_FAILED = "allocation-failed"
    PEER_ADDRESS_DENIED = "peer-address-denied"
    PERMISSION_FAILED = "permission-failed"
    NO_RELAY_ECHO = "no-relay-echo"
    TIMEOUT = "timeout"

    def __str__(self) -> str:
        return self.value


#: What to do about each cause, in words someone running the server can act on.
FIXES: dict[Cause, str] = {
    Cause.BAD_URL: "write it as stun:HOST[:PORT], turn:HOST[:PORT][?transport=udp|tcp] "
    "or turns:HOST[:PORT]",
    Cause.NAME_NOT_RESOLVED: "check the host name in the URL and the DNS the clients use",
    Cause.SERVER_DOWN: "nothing listens there: start the TURN server, or check the port "
    "(listening-port / tls-listening-port)",
    Cause.UDP_BLOCKED: "the server answers on TCP but not UDP: open UDP to it in the "
    "firewall (or drop no-udp), or give clients ?transport=tcp and turns: URLs",
    Cause.UNREACHABLE: "no answer at all: a firewall drops the packets or the host is down; "
    "check security groups and that the server listens on a public address",
    Cause.TLS_FAILED: "the port does not speak TLS: point turns: at tls-listening-port and "
    "give coturn cert= and pkey=",
    Cause.CERTIFICATE_UNTRUSTED: "serve the full chain (cert= with intermediates) from a CA "
    "clients trust, or give the doctor/clients that CA (--cafile, IceConfig tls_ca_file)",
    Cause.CERTIFICATE_EXPIRED: "renew the certificate and restart or reload the TURN server",
    Cause.CERTIFICATE_HOSTNAME_MISMATCH: "issue a certificate whose subjectAltName holds the "
    "host name in the URL, or use the name the certificate was issued for",
    Cause.NO_BINDING: "the server does not answer STUN Binding requests: is this a STUN/TURN port?",
    Cause.NO_CREDENTIALS: "this TURN server wants credentials: pass --user and --credential "
    "(or --secret-file for TURN REST credentials)",
    Cause.OPEN_RELAY: "the server relays for anyone who asks: turn on use-auth-secret (TURN "
    "REST) or lt-cred-mech so that only your users can allocate",
    Cause.UNKNOWN_REALM: "the server did not offer the expected realm: set realm= in "
    "turnserver.conf to the realm the credentials were made for",
    Cause.WRONG_CREDENTIALS: "the server refused the credentials: for TURN REST (use-auth-"
    "secret) mint them with the server's static-auth-secret; else check user and password",
    Cause.CREDENTIALS_EXPIRED: "the TURN REST username's expiry has passed: mint fresh "
    "credentials (and refresh them before the ttl ends in long calls)",
    Cause.STALE_NONCE: "the server's nonce went stale twice in a row: check its clock and "
    "stale-nonce lifetime",
    Cause.QUOTA_REACHED: "this user holds too many allocations: raise user-quota/total-quota "
    "or close the calls that leak them",
    Cause.INSUFFICIENT_CAPACITY: "the server has no relay port left: widen min-port..max-port "
    "(and the firewall for that range) or add servers",
    Cause.ALLOCATION_FAILED: "the server refused the allocation: read its log for the reason",
    Cause.PEER_ADDRESS_DENIED: "the server refuses to relay to this peer address: check "
    "denied-peer-ip/allowed-peer-ip (and allow-loopback-peers for a lab)",
    Cause.PERMISSION_FAILED: "the server refused CreatePermission: read its log for the reason",
    Cause.NO_RELAY_ECHO: "data sent through the relay never arrived: check that the relay "
    "port range is open in the firewall and relay-ip is reachable",
    Cause.TIMEOUT: "the step took longer than its timeout: the server is overloaded or a "
    "firewall drops part of the traffic",
}

_DEFAULT_PORTS = {"stun": 3478, "turn": 3478, "stuns": 5349, "turns": 5349}
_URL_RE = re.compile(r"^(?P<scheme>stuns?|turns?):(?P<rest>[^?]*)(?:\?(?P<query>.*))?$")


@dataclass(frozen=True)
class IceUrl:
    """A parsed ``stun:``/``turn:``/``turns:`` URL (RFC 7064/7065): what to dial, and how."""

    url: str
    scheme: str
    host: str
    port: int
    transport: Transport

    @property
    def is_turn(self) -> bool:
        return self.scheme.startswith("turn")

    @property
    def secure(self) -> bool:
        return self.transport == "tls"

    @classmethod
    def parse(cls, url: str) -> IceUrl:
        """Parse ``url``; ValueError says what is wrong in one line."""
        match = _URL_RE.match(url.strip())
        if match is None:
            raise ValueError(f"{url!r} is not a STUN/TURN URL ({FIXES[Cause.BAD_URL]})")
        scheme, rest, query = match["scheme"], match["rest"], match["query"]
        if rest.startswith("//"):
            rest = rest[2:]
        if rest.startswith("["):
            host, _, after = rest[1:].partition("]")
            port_text = after.removeprefix(":")
        else:
            host, _, port_text = rest.rpartition(":") if ":" in rest else (rest, "", "")
        host = unquote(host)
        if not host:
            raise ValueError(f"{url!r} has no host")
        try:
            port = int(port_text) if port_text else _DEFAULT_PORTS[scheme]
        except ValueError:
            raise ValueError(f"{url!r}: port {port_text!r} is not a number") from None
        if not 0 < port < 65536:
            raise ValueError(f"{url!r}: port {port} is out of range")
        transport: Transport = "tls" if scheme in ("turns", "stuns") else "udp"
        for item in (query or "").split("&"):
            key, _, value = item.partition("=")
            if key != "transport":
                if key:
                    raise ValueError(f"{url!r}: unknown parameter {key!r} (only transport=)")
                continue
            if value not in ("udp", "tcp"):
                raise ValueError(f"{url!r}: transport must be udp or tcp, not {value!r}")
            if transport == "tls" and value == "udp":
                raise ValueError(f"{url!r}: {scheme}: runs over TLS, so transport=udp cannot be")
            if transport != "tls":
                transport = "tcp" if value == "tcp" else "udp"
        return cls(url=url.strip(), scheme=scheme, host=host, port=port, transport=transport)


def username_expiry(username: str | None) -> int | None:
    """The expiry (unix seconds) of a TURN REST username ``"<expiry>:<user>"``, else None."""
    if not username:
        return None
    head, sep, _ = username.partition(":")
    if not sep or not head.isdigit():
        return None
    return int(head)


def describe_seconds(seconds: float) -> str:
    """``"23 h 59 min"``, ``"4 min 10 s"``, ``"12 s"``: time left, readable at a glance."""
    value = int(abs(seconds))
    days, rest = divmod(value, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


def auth_cause(
    code: int | None, username: str | None, now: float, *, retried_stale: bool = False
) -> Cause | None:
    """The cause of an error answer to an authenticated request (``None``: not an auth error).

    A 401 *after* we sent credentials means they were refused; a TURN REST username whose
    timestamp has passed tells "expired" apart from "wrong" (coturn answers 401 to both).
    A 438 is normal once (the nonce aged): only a second one in a row is a problem.
    """
    if code == 401:
        expiry = username_expiry(username)
        if expiry is not None and expiry <= now:
            return Cause.CREDENTIALS_EXPIRED
        return Cause.WRONG_CREDENTIALS
    if code == 438:
        return Cause.STALE_NONCE if retried_stale else None
    return None


def allocation_cause(code: int | None) -> Cause:
    """The cause of an error answer to Allocate (RFC 8656 §7.2 error codes)."""
    if code == 486:
        return Cause.QUOTA_REACHED
    if code == 508:
        return Cause.INSUFFICIENT_CAPACITY
    return Cause.ALLOCATION_FAILED


def permission_cause(code: int | None) -> Cause:
    """The cause of an error answer to CreatePermission/ChannelBind (403: peer denied)."""
    return Cause.PEER_ADDRESS_DENIED if code == 403 else Cause.PERMISSION_FAILED


def certificate_name_matches(host: str, dns_names: list[str], ip_names: list[str]) -> bool:
    """Does a certificate with these subjectAltNames cover ``host`` (RFC 6125: one leftmost
    ``*`` label for DNS names, exact match for IP addresses)?"""
    try:
        wanted = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return any(ipaddress.ip_address(ip) == wanted for ip in ip_names)
    name = host.lower().rstrip(".")
    for pattern in dns_names:
        pattern = pattern.lower().rstrip(".")
        if pattern == name:
            return True
        if pattern.startswith("*.") and "." in name:
            if name.split(".", 1)[1] == pattern[2:]:
                return True
    return False


def utc_text(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
