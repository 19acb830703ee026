"""A real coturn ``turnserver`` on loopback, started and stopped from the running event loop.

``async with Coturn() as turn:`` writes a config into a private temp directory (listening
and relay IP, free ports, a relay port range, realm, ``use-auth-secret``,
``allow-loopback-peers``, UDP + TCP + TLS with a freshly generated CA and server certificate
whose subjectAltName is the listening IP), starts the process, waits until it answers STUN
over UDP, accepts TCP and completes a verified TLS handshake, streams its log (secret
redacted) to a callback, and stops it with SIGTERM (SIGKILL after a grace period).

Two facts measured here shape the config: without ``allow-loopback-peers`` coturn answers
403 to every permission for 127.0.0.1 and aiortc hangs in ``connecting``; with a certificate
the peers do not trust, aioice gathers no relay candidate and says nothing — hence the CA
this module generates and :class:`~rtclab.ice.config.IceConfig` ``tls_ca_file``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import random
import re
import shutil
import signal
import socket
import ssl
import tempfile
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from aioice import stun

from .._proc import die_with_parent
from .certificates import TlsFiles, generate_certificate
from .config import IceConfig, IceServer, IceTransportPolicy
from .credentials import DEFAULT_TTL, TurnCredentials, TurnSecret, turn_credentials

__all__ = [
    "Coturn",
    "CoturnError",
    "CoturnNotFoundError",
    "TlsFiles",
    "TurnTransport",
    "find_turnserver",
    "free_port",
    "generate_certificate",
]

if TYPE_CHECKING:
    from .turn_doctor import DoctorReport

log = logging.getLogger(__name__)

TurnTransport = Literal["udp", "tcp", "tls"]
LogCallback = Callable[[str], None]

#: Lines that mean "an allocation was created" in coturn 4.x logs (any verbosity).
ALLOCATION_RE = re.compile(r"ALLOCATE processed, success")
_PREFIX_RE = re.compile(r"^\d+: (?:\(\d+\): )?(?:[A-Z]+: )?:? ?")


class CoturnError(RuntimeError):
    """coturn could not be started, or stopped answering."""


class CoturnNotFoundError(CoturnError, FileNotFoundError):
    """The ``turnserver`` binary is missing: the message names the package to install."""


def find_turnserver(binary: str | os.PathLike[str] | None = None) -> str:
    """Path of ``turnserver``; raises :class:`CoturnNotFoundError` naming the Debian package."""
    candidate = os.fspath(binary) if binary is not None else "turnserver"
    found = shutil.which(candidate)
    if found is None and binary is None and os.access("/usr/bin/turnserver", os.X_OK):
        found = "/usr/bin/turnserver"
    if found is None:
        raise CoturnNotFoundError(
            f"coturn's `{candidate}` binary was not found: install the Debian package "
            "`coturn` (sudo apt-get install coturn; scripts/setup.sh --test does it), "
            "or pass Coturn(binary=...)"
        )
    return found


def free_port(host: str = "127.0.0.1", *, udp: bool = True, tcp: bool = True) -> int:
    """A port that is free for both UDP and TCP on ``host`` right now (bind port 0, check)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(100):
        with socket.socket(family, socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM) as first:
            first.bind((host, 0))
            port = int(first.getsockname()[1])
            if not (udp and tcp):
                return port
            try:
                with socket.socket(family, socket.SOCK_DGRAM) as second:
                    second.bind((host, port))
            except OSError:
                continue
            return port
    raise CoturnError(f"no port free for both UDP and TCP on {host}")


class Coturn:
    """A coturn process on loopback for the lab; ``async with Coturn() as turn: ...``.

    Ports default to free ones (``port`` serves UDP and TCP, ``tls_port`` TLS). ``on_log``
    receives every log line as it arrives, secret redacted (the Lab forwards them into the
    events frame); the last ``keep_log`` lines stay in :attr:`log`. ``secret`` defaults to a
    fresh random one: credentials come from :meth:`credentials`, never from the secret.
    ``allow_loopback_peers=False`` reproduces the production default, where relaying to
    127.x is refused (403) — useful to show that failure, useless for a loopback lab.

    Deliberate misconfigurations, for the doctor and notebooks: ``udp=False`` (coturn's
    ``no-udp``: TCP/TLS only), ``denied_peer_ips`` (``denied-peer-ip`` ranges; relaying to
    them answers 403), ``user_quota`` (allocations per user; 486 beyond), a tiny
    ``relay_ports`` range (508 once it is used up) and ``certificate_hosts`` (the names the
    TLS certificate is issued for; default the listening IP and ``localhost``).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls_port: int = 0,
        tls: bool = True,
        relay_ports: tuple[int, int] | None = None,
        realm: str = "rtclab",
        secret: str | TurnSecret | None = None,
        binary: str | os.PathLike[str] | None = None,
        on_log: LogCallback | None = None,
        keep_log: int = 5000,
        verbose: bool = True,
        ready_timeout: float = 10.0,
        allow_loopback_peers: bool = True,
        extra_config: Sequence[str] = (),
        udp: bool = True,
        denied_peer_ips: Sequence[str] = (),
        user_quota: int | None = None,
        certificate_hosts: Sequence[str] | None = None,
    ) -> None:
        ipaddress.ip_address(host)  # a literal address: coturn binds it, certificates name it
        if relay_ports is not None and not (1024 <= relay_ports[0] <= relay_ports[1] <= 65535):
            raise ValueError("relay_ports must be (low, high) with 1024 <= low <= high <= 65535")
        self.host = host
        self.port = port
        self.tls_port = tls_port
        self.tls = tls
        self.relay_ports = relay_ports
        self.realm = realm
        self.secret = TurnSecret(secret)
        self.binary = binary
        self.verbose = verbose
        self.ready_timeout = ready_timeout
        self.allow_loopback_peers = allow_loopback_peers
        self.extra_config = tuple(extra_config)
        self.udp = udp
        self.denied_peer_ips = tuple(denied_peer_ips)
        self.user_quota = user_quota
        self.certificate_hosts = (
            (host, "localhost") if certificate_hosts is None else tuple(certificate_hosts)
        )
        self.log: deque[str] = deque(maxlen=keep_log)
        self.allocations = 0
        """How many allocations coturn logged as created since start."""
        self.tls_files: TlsFiles | None = None
        self.config_file: Path | None = None
        self.started_ms: float | None = None
        """How long :meth:`start` took until coturn answered on every transport."""
        self._on_log: list[LogCallback] = [on_log] if on_log is not None else []
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._log_changed: asyncio.Event | None = None

    # ---------------------------------------------------------------- addresses

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def ca_file(self) -> Path | None:
        """The CA to trust for ``turns:`` (pass as ``IceConfig(tls_ca_file=...)``)."""
        return None if self.tls_files is None else self.tls_files.ca_file

    def url(self, transport: TurnTransport = "udp") -> str:
        """``turn:…?transport=udp|tcp`` or ``turns:…?transport=tcp`` (``tls``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if transport == "tls":
            if not self.tls:
                raise ValueError("this Coturn was started with tls=False")
            return f"turns:{host}:{self.tls_port}?transport=tcp"
        if transport not in ("udp", "tcp"):
            raise ValueError(f"transport must be 'udp', 'tcp' or 'tls', not {transport!r}")
        return f"turn:{host}:{self.port}?transport={transport}"

    @property
    def stun_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"stun:{host}:{self.port}"

    def urls(self, transports: Sequence[TurnTransport] = ("udp", "tcp", "tls")) -> list[str]:
        return [self.url(t) for t in transports if t != "tls" or self.tls]

    # ---------------------------------------------------------------- credentials

    def credentials(
        self,
        user: str = "lab",
        *,
        transports: Sequence[TurnTransport] = ("udp", "tcp", "tls"),
        ttl: int = DEFAULT_TTL,
        secret: str | TurnSecret | None = None,
    ) -> TurnCredentials:
        """Credentials this server accepts (``secret=`` other than ours gives a 401)."""
        return turn_credentials(
            self.secret if secret is None else secret, user, self.urls(transports), ttl=ttl
        )

    def ice_servers(
        self,
        transports: Sequence[TurnTransport] = ("udp",),
        *,
        user: str = "lab",
        ttl: int = DEFAULT_TTL,
        stun: bool = False,
        secret: str | TurnSecret | None = None,
    ) -> tuple[IceServer, ...]:
        """One TURN :class:`IceServer` per transport, in order (plus our STUN URL first)."""
        creds = self.credentials(user, transports=transports, ttl=ttl, secret=secret)
        servers = creds.ice_servers()
        return ((IceServer(self.stun_url),) if stun else ()) + servers

    def ice_config(
        self,
        transports: Sequence[TurnTransport] = ("udp",),
        *,
        policy: IceTransportPolicy = "relay",
        user: str = "lab",
        ttl: int = DEFAULT_TTL,
        stun: bool = False,
        secret: str | TurnSecret | None = None,
        connect_timeout: float = 10.0,
        turn_timeout: float | None = None,
    ) -> IceConfig:
        """An :class:`IceConfig` using this server and trusting its certificate."""
        return IceConfig(
            ice_servers=self.ice_servers(transports, user=user, ttl=ttl, stun=stun, secret=secret),
            ice_transport_policy=policy,
            connect_timeout=connect_timeout,
            tls_ca_file=str(self.ca_file) if self.ca_file is not None else None,
            turn_timeout=IceConfig.turn_timeout if turn_timeout is None else turn_timeout,
        )

    async def doctor(
        self, transports: Sequence[TurnTransport] = ("udp", "tcp", "tls"), **options: Any
    ) -> DoctorReport:
        """Check this server with :func:`rtclab.ice.doctor`: its STUN URL and its TURN URLs,
        credentials minted from its secret, its CA trusted (``options`` override)."""
        from .turn_doctor import doctor

        options.setdefault("secret", self.secret)
        options.setdefault("cafile", self.ca_file)
        return await doctor([self.stun_url, *self.urls(transports)], **options)

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts this server's generated CA."""
        if self.ca_file is None:
            raise RuntimeError("no certificate yet: start the server first (tls=True)")
        return ssl.create_default_context(cafile=str(self.ca_file))

    # ---------------------------------------------------------------- config

    def config_text(self, workdir: Path) -> str:
        """The turnserver.conf we run (the secret line included: the file is 0600)."""
        low, high = self.relay_ports or _random_relay_range()
        lines = [
            "# generated by rtclab.ice.coturn",
            f"listening-ip={self.host}",
            f"relay-ip={self.host}",
            f"listening-port={self.port}",
            f"min-port={low}",
            f"max-port={high}",
            f"realm={self.realm}",
            "use-auth-secret",
            f"static-auth-secret={self.secret.reveal()}",
            "no-multicast-peers",
            "fingerprint",
            "no-cli",
            "no-dtls",
            "no-rfc5780",
            "no-tlsv1",
            "no-tlsv1_1",
            f"pidfile={workdir / 'turnserver.pid'}",
            f"userdb={workdir / 'turndb'}",
            "log-file=stdout",
            "simple-log",
        ]
        if self.allow_loopback_peers:
            # without it coturn answers 403 to permissions for 127.x peers (measured)
            lines.append("allow-loopback-peers")
        if self.verbose:
            lines.append("verbose")
        if not self.udp:
            lines.append("no-udp")
        lines += [f"denied-peer-ip={ips}" for ips in self.denied_peer_ips]
        if self.user_quota is not None:
            lines.append(f"user-quota={self.user_quota}")
        if self.tls and self.tls_files is not None:
            lines += [
                f"tls-listening-port={self.tls_port}",
                f"alt-tls-listening-port={self.tls_port}",
                f"cert={self.tls_files.cert_file}",
                f"pkey={self.tls_files.key_file}",
            ]
        else:
            lines.append("no-tls")
        lines += list(self.extra_config)
        return "\n".join(lines) + "\n"

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> Coturn:
        """Start turnserver and return once it answers on UDP, TCP (and TLS)."""
        if self.running:
            raise RuntimeError("coturn is already running")
        binary = find_turnserver(self.binary)
        began = time.monotonic()
        self._tmp = tempfile.TemporaryDirectory(prefix="rtclab-coturn-")
        workdir = Path(self._tmp.name)
        os.chmod(workdir, 0o700)
        try:
            if self.port == 0:
                self.port = free_port(self.host)
            if self.tls:
                if self.tls_port == 0:
                    self.tls_port = free_port(self.host, udp=False)
                self.tls_files = generate_certificate(workdir, self.certificate_hosts)
            self.config_file = workdir / "turnserver.conf"
            fd = os.open(self.config_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(self.config_text(workdir))
            self.allocations = 0
            self._log_changed = asyncio.Event()
            self._process = await asyncio.create_subprocess_exec(
                binary, "-c", str(self.config_file),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                cwd=workdir,
                start_new_session=True,  # a Ctrl-C in the kernel does not reach it
                preexec_fn=die_with_parent(),  # a killed kernel takes it along
            )  # fmt: skip
            self._reader = asyncio.ensure_future(self._read_log(self._process))
            await self._wait_ready()
        except BaseException:
            await self.stop()
            raise
        self.started_ms = (time.monotonic() - began) * 1000
        log.info("coturn %s ready in %.0f ms", self.urls(), self.started_ms)
        return self

    async def stop(self, grace: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; removes the temp directory."""
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), grace)
            except asyncio.TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if self._reader is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._reader, 2.0)
            self._reader = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
            self.tls_files = None
            self.config_file = None

    async def __aenter__(self) -> Coturn:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---------------------------------------------------------------- log

    def add_log_listener(self, listener: LogCallback) -> None:
        self._on_log.append(listener)

    def remove_log_listener(self, listener: LogCallback) -> None:
        with contextlib.suppress(ValueError):
            self._on_log.remove(listener)

    async def wait_for_log(self, pattern: str | re.Pattern[str], timeout: float = 5.0) -> str:
        """The first log line (kept or yet to come) matching ``pattern``; TimeoutError if none."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        seen = 0
        while True:
            lines = list(self.log)
            for line in lines[seen:]:
                if regex.search(line):
                    return line
            seen = len(lines)
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"coturn logged nothing matching {regex.pattern!r}")
            assert self._log_changed is not None
            self._log_changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._log_changed.wait(), remaining)

    async def _read_log(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        secret = self.secret.reveal()
        while True:
            raw = await process.stdout.readline()
            if not raw:
                break
            line = _PREFIX_RE.sub("", raw.decode(errors="replace").rstrip())
            if not line.strip():
                continue
            if secret in line:  # coturn does not print it today; never trust that
                line = line.replace(secret, "***")
            self.log.append(line)
            if ALLOCATION_RE.search(line):
                self.allocations += 1
            if self._log_changed is not None:
                self._log_changed.set()
            for listener in list(self._on_log):
                try:
                    listener(line)
                except Exception:  # a broken listener must not stop the log pump
                    log.exception("coturn log listener failed")

    async def _wait_ready(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ready_timeout
        pending: dict[str, Callable[[], object]] = {"tcp": self._probe_tcp}
        if self.udp:
            pending["udp"] = self._probe_udp
        if self.tls:
            pending["tls"] = self._probe_tls
        last_error: Exception | None = None
        while pending:
            if self._process is None or self._process.returncode is not None:
                await asyncio.sleep(0.05)  # let the reader drain the last lines
                tail = "\n".join(list(self.log)[-15:])
                raise CoturnError(f"turnserver exited during startup; its last lines:\n{tail}")
            for name, probe in list(pending.items()):
                try:
                    await asyncio.wait_for(probe(), 0.5)  # type: ignore[arg-type]
                except (OSError, asyncio.TimeoutError, stun.TransactionError) as exc:
                    last_error = exc
                else:
                    del pending[name]
            if pending:
                if loop.time() > deadline:
                    raise CoturnError(
                        f"turnserver did not answer on {sorted(pending)} within "
                        f"{self.ready_timeout:g}s (last error: {last_error!r})"
                    )
                await asyncio.sleep(0.05)

    async def _probe_udp(self) -> None:
        """A STUN Binding request over UDP: coturn answers it without credentials."""
        loop = asyncio.get_running_loop()
        answered: asyncio.Future[bytes] = loop.create_future()

        class _Probe(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
                if not answered.done():
                    answered.set_result(data)

            def error_received(self, exc: Exception) -> None:
                if not answered.done():
                    answered.set_exception(exc)

        transport, _ = await loop.create_datagram_endpoint(
            _Probe, remote_addr=(self.host, self.port)
        )
        try:
            request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
            transport.sendto(bytes(request))
            response = stun.parse_message(await answered)
            if response.transaction_id != request.transaction_id:
                raise OSError("unexpected STUN response")
        finally:
            transport.close()

    async def _probe_tcp(self) -> None:
        _, writer = await asyncio.open_connection(self.host, self.port)
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()

    async def _probe_tls(self) -> None:
        """A verified TLS handshake: proves the certificate is served and matches the CA."""
        context = self.ssl_context()
        context.check_hostname = self.host in self.certificate_hosts  # a wrong name on purpose
        _, writer = await asyncio.open_connection(self.host, self.tls_port, ssl=context)
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Coturn {self.host} udp/tcp:{self.port} tls:{self.tls_port} {state}>"


def _random_relay_range(size: int = 200) -> tuple[int, int]:
    """A random window above the ephemeral range's start: parallel servers rarely overlap,
    and coturn skips ports that are busy anyway."""
    low = random.randrange(49152, 65535 - size)
    return low, low + size - 1
