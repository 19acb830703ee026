"""The TURN doctor against real coturn on loopback: each misconfiguration named by its cause."""

from __future__ import annotations

import asyncio
import shutil
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aioice.turn import create_turn_endpoint

from rtclab.ice import Cause, DoctorReport, doctor
from rtclab.ice.coturn import Coturn, free_port

pytestmark = pytest.mark.turn

EXE = str(Path(sys.executable).with_name("rtclab"))
TURN_STEPS = ["resolve", "reach", "binding", "auth", "allocate", "relay", "credentials"]


def needs_coturn() -> None:
    if shutil.which("turnserver") is None:
        pytest.skip("turnserver not installed (Debian package coturn; scripts/setup.sh --test)")


async def check(turn: Coturn, urls: list[str], **kwargs: object) -> DoctorReport:
    creds = turn.credentials()
    options: dict[str, object] = {
        "username": creds.username, "credential": creds.credential, "cafile": turn.ca_file,
    }  # fmt: skip
    options.update(kwargs)
    return await doctor(urls, **options)  # type: ignore[arg-type]


def failed(report: DoctorReport, url: str) -> tuple[str, Cause | None, str]:
    """(step, cause, fix) of the first failed step of ``url``."""
    step = next(s for s in report.steps if s.url == url and not s.ok)
    return step.step, step.cause, step.fix


async def test_healthy_coturn_every_step_ok_within_two_seconds(coturn: Coturn) -> None:
    urls = [coturn.stun_url, *coturn.urls()]
    began = time.perf_counter()
    report = await check(coturn, urls)
    took = time.perf_counter() - began
    assert took < 2.0
    frame = report.frame
    assert list(frame.columns) == ["step", "url", "transport", "ok", "ms", "detail", "fix", "cause"]
    assert frame["ok"].all() and frame["cause"].isna().all(), report.table()
    assert report.ok and report.working == urls
    assert report.verdict.startswith("all 4 URL(s) relay")
    steps = {url: list(frame[frame["url"] == url]["step"]) for url in urls}
    assert steps[coturn.stun_url] == ["resolve", "reach", "binding"]
    assert steps[coturn.url("udp")] == TURN_STEPS
    assert steps[coturn.url("tcp")] == TURN_STEPS
    assert steps[coturn.url("tls")] == ["resolve", "reach", "tls", *TURN_STEPS[2:]]
    assert set(frame["transport"]) == {"udp", "tcp", "tls"}
    relay = frame[(frame["step"] == "relay") & (frame["url"] == coturn.url("udp"))].iloc[0]
    assert "echoed both ways" in relay["detail"] and "127.0.0.1:" in relay["detail"]
    allocate = frame[(frame["step"] == "allocate") & (frame["transport"] == "tcp")].iloc[0]
    assert allocate["detail"].startswith("relayed address 127.0.0.1:")
    tls = frame[frame["step"] == "tls"].iloc[0]
    assert "chain trusted" in tls["detail"] and "127.0.0.1" in tls["detail"]
    credentials = frame[frame["step"] == "credentials"].iloc[0]
    assert credentials["detail"].startswith("expires in 23 h")
    html = report._repr_html_()
    assert html.count("rtclab-doctor-ok") == len(frame) and "#d8f5d0" in html
    await asyncio.sleep(0.3)
    assert coturn.allocations >= 6  # two per TURN URL: the relay echo is real
    assert not any(coturn.secret.reveal() in text for text in (report.table(), html))
    mine = await coturn.doctor()  # the launcher checks itself the same way
    assert mine.ok and mine.working == urls


@pytest.mark.parametrize("transport", ["udp", "tls"])
async def test_wrong_secret_is_named(coturn: Coturn, transport: str) -> None:
    url = coturn.url(transport)  # type: ignore[arg-type]
    report = await doctor(url, secret="not-the-secret", user="alice", cafile=coturn.ca_file)
    assert not report.ok
    step, cause, fix = failed(report, url)
    assert (step, cause) == ("auth", Cause.WRONG_CREDENTIALS)
    assert "static-auth-secret" in fix
    assert "401" in report.frame.set_index("step").loc["auth", "detail"]
    assert report.verdict == f"nothing works — {url}: wrong-credentials"


async def test_expired_credentials_are_told_apart_from_wrong_ones(coturn: Coturn) -> None:
    creds = coturn.credentials(transports=["udp"], ttl=-120)
    url = coturn.url("udp")
    report = await doctor(url, username=creds.username, credential=creds.credential)
    assert report.cause(url) is Cause.CREDENTIALS_EXPIRED
    frame = report.frame.set_index("step")
    assert "passed 2 min" in frame.loc["auth", "detail"]
    assert frame.loc["credentials", "cause"] == "credentials-expired"
    assert "expired 2 min" in frame.loc["credentials", "detail"]


async def test_certificate_for_another_host_name_is_named() -> None:
    needs_coturn()
    async with Coturn(certificate_hosts=["turn.example.org"]) as turn:
        url = turn.url("tls")
        report = await check(turn, [url, turn.url("udp")])
        step, cause, fix = failed(report, url)
        assert (step, cause) == ("tls", Cause.CERTIFICATE_HOSTNAME_MISMATCH)
        assert "turn.example.org" in report.frame.query("step == 'tls'")["detail"].iloc[0]
        assert "subjectAltName" in fix
        assert report.working == [turn.url("udp")]
        # without the CA the chain is what fails, named apart
        untrusted = await check(turn, [url], cafile=None)
        assert untrusted.cause(url) is Cause.CERTIFICATE_UNTRUSTED


async def test_udp_blocked_is_told_apart_from_server_down() -> None:
    needs_coturn()
    async with Coturn(udp=False, tls=False) as turn:
        report = await check(turn, turn.urls())
        assert failed(report, turn.url("udp"))[:2] == ("reach", Cause.UDP_BLOCKED)
        assert report.working == [turn.url("tcp")]
        assert "?transport=tcp" in failed(report, turn.url("udp"))[2]


async def test_relay_port_range_exhausted_is_named() -> None:
    needs_coturn()
    port = free_port()
    async with Coturn(relay_ports=(port, port), tls=False) as turn:
        creds = turn.credentials("holder", transports=["udp"])
        held, _ = await create_turn_endpoint(
            asyncio.DatagramProtocol, ("127.0.0.1", turn.port), creds.username, creds.credential
        )
        try:
            report = await check(turn, [turn.url("udp")])
        finally:
            held.close()
        step, cause, fix = failed(report, turn.url("udp"))
        assert (step, cause) == ("allocate", Cause.INSUFFICIENT_CAPACITY)
        assert "508" in report.frame.query("step == 'allocate'")["detail"].iloc[0]
        assert "min-port" in fix


async def test_user_quota_reached_is_named() -> None:
    needs_coturn()
    async with Coturn(user_quota=1, tls=False) as turn:
        report = await check(turn, [turn.url("udp")])
        step, cause, _ = failed(report, turn.url("udp"))
        assert (step, cause) == ("relay", Cause.QUOTA_REACHED)  # the second allocation


async def test_peer_address_denied_is_named() -> None:
    needs_coturn()
    async with Coturn(denied_peer_ips=["127.0.0.0-127.255.255.255"], tls=False) as turn:
        report = await check(turn, turn.urls())
        for url in turn.urls():
            step, cause, fix = failed(report, url)
            assert (step, cause) == ("relay", Cause.PEER_ADDRESS_DENIED)
            assert "denied-peer-ip" in fix
        assert "403" in report.frame.query("step == 'relay'")["detail"].iloc[0]
        assert report.frame.query("step == 'allocate'")["ok"].all()


async def test_server_down_is_named_within_the_step_timeout() -> None:
    port = free_port()  # nothing listens: refused on TCP, ICMP port unreachable on UDP
    urls = [f"turn:127.0.0.1:{port}", f"turn:127.0.0.1:{port}?transport=tcp"]
    began = time.perf_counter()
    report = await doctor(urls, username="u", credential="p", timeout=1.0)
    assert time.perf_counter() - began < 1.5
    for url in urls:
        assert failed(report, url)[:2] == ("reach", Cause.SERVER_DOWN)
    # a socket that swallows every packet: no ICMP, no answer — named when the timeout ends
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        url = f"stun:127.0.0.1:{silent.getsockname()[1]}"
        began = time.perf_counter()
        report = await doctor(url, timeout=1.0)
        assert 0.7 < time.perf_counter() - began < 1.5
        assert failed(report, url)[:2] == ("reach", Cause.UNREACHABLE)
    finally:
        silent.close()


async def test_only_the_second_of_two_turn_servers_alive(coturn: Coturn) -> None:
    dead = f"turn:127.0.0.1:{free_port()}?transport=tcp"
    live = coturn.url("tcp")
    report = await check(coturn, [dead, live])
    assert not report.ok and report.working == [live]
    assert report.cause(dead) is Cause.SERVER_DOWN and report.cause(live) is None
    assert report.verdict == f"1 of 2 work ({live}) — {dead}: server-down"
    assert "rtclab-doctor-fail" in report._repr_html_()


@pytest.fixture
async def secret_file(coturn: Coturn, tmp_path: Path) -> AsyncIterator[Path]:
    path = tmp_path / "secret"
    path.write_text(coturn.secret.reveal() + "\n")
    yield path


async def run_cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        EXE, "turn-check", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return int(proc.returncode or 0), out.decode(), err.decode()


async def test_cli_prints_the_table_and_exits_by_verdict(
    coturn: Coturn, secret_file: Path, tmp_path: Path
) -> None:
    code, out, err = await run_cli(
        *coturn.urls(), "--secret-file", str(secret_file), "--user", "cli",
        "--cafile", str(coturn.ca_file),
    )  # fmt: skip
    assert code == 0, out + err
    assert "verdict: all 3 URL(s) relay" in out
    assert out.count("ok  relay") == 0 and out.count("ok relay") == 3
    wrong = tmp_path / "wrong"
    wrong.write_text("not-it\n")
    code, out, _ = await run_cli(coturn.url("udp"), "--secret-file", str(wrong), "--user", "cli")
    assert code == 1
    assert "XX auth" in out and "cause: wrong-credentials" in out and "fix: " in out
    creds = coturn.credentials("cli")
    code, out, _ = await run_cli(
        coturn.url("tcp"), "--user", creds.username, "--credential", creds.credential, "--json"
    )
    assert code == 0 and '"step":"relay"' in out.replace(" ", "")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["http://turn.example.org"], "is not a STUN/TURN URL"),
        (["turn:127.0.0.1?transport=sctp"], "transport must be udp or tcp"),
        (["turn:127.0.0.1", "--credential", "x"], "need --user"),
        (["turns:127.0.0.1", "--cafile", "/nonexistent/ca.pem"], "--cafile"),
        (["turn:127.0.0.1", "--timeout", "0"], "positive number of seconds"),
        (["turn:127.0.0.1", "--user", "u", "--secret-file", "/nonexistent"], "no such file"),
    ],
)
async def test_cli_bad_input_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    code, out, err = await run_cli(*args)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
    assert err.startswith("rtclab turn-check: ")


async def test_unknown_realm_and_missing_credentials_are_named(coturn: Coturn) -> None:
    url = coturn.url("udp")
    report = await check(coturn, [url], realm="turn.example.org")
    step, cause, _ = failed(report, url)
    assert (step, cause) == ("auth", Cause.UNKNOWN_REALM)
    assert "'rtclab'" in report.frame.query("step == 'auth'")["detail"].iloc[0]
    bare = await doctor(url)
    assert failed(bare, url)[:2] == ("auth", Cause.NO_CREDENTIALS)
    assert "credentials" not in set(bare.frame["step"])  # no credentials, no time left


async def test_servers_as_ice_servers_and_rtc_dicts(coturn: Coturn) -> None:
    """What a peer is configured with (IceServer, browser iceServers JSON) checks as is."""
    creds = coturn.credentials("dicts", transports=["tcp"])
    servers = [*coturn.ice_servers(["udp"]), creds.to_dict()["iceServers"][0]]
    report = await doctor(servers)
    assert report.ok and report.working == [coturn.url("udp"), coturn.url("tcp")]
    assert "'" + creds.username + "'" in report.frame.query("transport == 'tcp'")["detail"].iloc[3]


async def test_a_server_that_accepts_and_never_answers_is_named_per_step() -> None:
    """TCP accepted, then silence: each step ends at its own timeout with its own name."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # swallow everything until the doctor hangs up
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    turn_url, stun_url = f"turn:127.0.0.1:{port}?transport=tcp", f"stun:127.0.0.1:{port}"
    try:
        began = time.perf_counter()
        report = await doctor([turn_url], username="u", credential="p", timeout=0.5)
        took = time.perf_counter() - began
        stun_report = await doctor(stun_url, timeout=0.5)  # UDP to a TCP-only port
    finally:
        server.close()
    assert took < 1.5  # reach at once, binding 0.4 s, auth 0.5 s
    frame = report.frame.set_index("step")
    assert frame.loc["reach", "ok"] and frame.loc["binding", "ok"]  # a warning on TURN
    assert "no answer" in frame.loc["binding", "detail"] and frame.loc["binding", "fix"]
    assert report.cause(turn_url) is Cause.TIMEOUT
    assert frame.loc["auth", "detail"] == "no answer within 0.5 s"
    assert stun_report.cause(stun_url) is Cause.UDP_BLOCKED
