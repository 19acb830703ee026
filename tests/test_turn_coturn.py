"""Real coturn on loopback: relay paths, TLS trust, named failures, coturn's own client check."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import socket
import sys
import time
from pathlib import Path

import pytest
from helpers import until

from rtclab.ice.config import IceConfig, IceServer
from rtclab.ice.coturn import Coturn, CoturnNotFoundError
from rtclab.lab import Lab
from rtclab.peer import Peer
from rtclab.signaling.server import SignalingServer

pytestmark = pytest.mark.turn


async def pair(
    server: SignalingServer, ice: IceConfig, room: str, timeout: float | None = None
) -> tuple[Peer, Peer, float, Exception | None]:
    """Two data-only peers in ``room``; returns them, the time taken and any failure."""
    answerer = Peer(f"ans-{room}", server.url, room=room, ice=ice, video=False, audio=False)
    offerer = Peer(f"off-{room}", server.url, room=room, ice=ice, video=False, audio=False)
    await answerer.join()
    began = time.monotonic()
    await offerer.join()
    error: Exception | None = None
    # a little longer than the peers' own watchdog, so that it names the failure first
    timeout = ice.connect_timeout + 1.0 if timeout is None else timeout
    try:
        await offerer.wait_connected(count=1, timeout=timeout)
        await answerer.wait_connected(count=1, timeout=timeout)
    except (ConnectionError, TimeoutError) as exc:
        error = exc
    return offerer, answerer, time.monotonic() - began, error


async def close(*peers: Peer) -> None:
    await asyncio.gather(*(p.close() for p in peers), return_exceptions=True)


async def http_get(url: str, token: str | None = None) -> tuple[int, bytes]:
    rest = url.removeprefix("http://")
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.partition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    writer.write(f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\n{auth}\r\n".encode())
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def test_relay_only_pair_connects_through_lab_turn_with_endpoint_credentials(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """End to end: lab.turn() -> credentials from the endpoint -> relay<->relay, logged."""
    caplog.set_level(logging.DEBUG)
    async with Lab(stats_interval=0.5) as lab:
        turn = await lab.turn()
        assert lab.turn_credentials_url is not None and lab.turn_token
        status, _ = await http_get(lab.turn_credentials_url)
        assert status == 401
        status, body = await http_get(lab.turn_credentials_url + "?user=alice", lab.turn_token)
        assert status == 200
        served = json.loads(body)["iceServers"][0]
        udp = [u for u in served["urls"] if u.endswith("transport=udp")]
        ice = IceConfig(
            ice_servers=(IceServer(udp, served["username"], served["credential"]),),
            ice_transport_policy="relay",
            connect_timeout=5,
        )
        alice = await lab.peer("alice", ice=ice, video=False, audio=False)
        bob = await lab.peer("bob", ice=ice, video=False, audio=False)
        await lab.wait_connected()
        await turn.wait_for_log("ALLOCATE processed, success")
        assert turn.allocations >= 2
        for peer in (alice, bob):
            (conn,) = peer.connections.values()
            assert conn.state == "connected"
        frame = lab.candidates
        assert set(frame["type"]) == {"relay"}, frame
        chosen = frame[frame["selected"]]
        assert set(chosen["side"]) == {"local", "remote"} and len(chosen) == 4
        local = frame[frame["side"] == "local"]
        assert (local["relay_protocol"] == "udp").all()
        assert local["url"].str.startswith("turn:127.0.0.1").all()
        assert local["t_ms"].between(0, 5000).all()
        await asyncio.sleep(1.2)  # two stats samples: the path is in the samples too
        pairs = lab.selected_pairs()
        assert set(pairs["local_candidate_type"]) == {"relay"}
        events = lab.events
        assert (events["event"] == "coturn-log").sum() > 5
        assert {"turn-allocated", "ice-candidate-gathered"} <= set(events["event"])
        secret = turn.secret.reveal()
        texts = [
            events.to_csv(), lab.samples.to_csv(), frame.to_csv(), "\n".join(turn.log),
            caplog.text, repr(turn), repr(ice),
        ]  # fmt: skip
        assert not any(secret in text for text in texts)
        assert not any(served["credential"] in text for text in texts[:4])
    assert not turn.running  # lab.stop() stopped it


@pytest.mark.parametrize(
    ("case", "transport"), [("wrong secret", "udp"), ("expired credential", "tcp")]
)
async def test_bad_credentials_fail_named_within_the_timeout(
    server: SignalingServer, coturn: Coturn, case: str, transport: str
) -> None:
    if case == "wrong secret":
        ice = coturn.ice_config([transport], secret="not-the-secret", connect_timeout=4)  # type: ignore[list-item]
    else:
        ice = coturn.ice_config([transport], ttl=-60, connect_timeout=4)  # type: ignore[list-item]
    offerer, answerer, took, error = await pair(server, ice, case.replace(" ", "-"))
    try:
        assert took < ice.connect_timeout
        assert isinstance(error, ConnectionError)
        (conn,) = offerer.connections.values()
        assert conn.state == "failed"
        assert "TURN 401 unauthorized (wrong secret or expired credential)" in str(
            conn.failure_reason
        )
        assert [e.value for e in offerer.events if e.event == "turn-failed"]
        # the answerer fails too, with its own reason, once the empty offer reaches it
        with pytest.raises(ConnectionError, match="offered no ICE candidates"):
            await answerer.wait_connected(count=1, timeout=2.0)
        (other,) = answerer.connections.values()
        assert other.state == "failed"
    finally:
        await close(offerer, answerer)


async def test_tls_turn_works_with_the_generated_certificate(
    server: SignalingServer, coturn: Coturn
) -> None:
    assert coturn.ca_file is not None and coturn.ca_file.exists()
    ice = coturn.ice_config(["tls"], connect_timeout=5)
    assert ice.tls_ca_file == str(coturn.ca_file)
    offerer, answerer, _, error = await pair(server, ice, "tls")
    try:
        assert error is None
        frame = offerer.candidates()
        local = frame[(frame["side"] == "local") & frame["selected"]].iloc[0]
        assert local["type"] == "relay" and local["relay_protocol"] == "tls"
        assert local["url"].startswith("turns:127.0.0.1:")
    finally:
        await close(offerer, answerer)
    # the same server without its CA: the failure that aioice keeps silent is named
    untrusted = ice.replace(tls_ca_file=None, connect_timeout=4)
    offerer, answerer, _, error = await pair(server, untrusted, "tls-untrusted")
    try:
        assert isinstance(error, ConnectionError)
        (conn,) = offerer.connections.values()
        assert "TURN TLS certificate not trusted" in str(conn.failure_reason)
    finally:
        await close(offerer, answerer)


async def test_credentials_pass_coturns_own_client(coturn: Coturn) -> None:
    """turnutils_uclient (coturn's test client) allocates and relays with our credentials."""
    uclient = shutil.which("turnutils_uclient")
    if uclient is None:
        pytest.skip("turnutils_uclient not installed (Debian package coturn)")

    async def run(secret: str | None) -> tuple[int, str]:
        creds = coturn.credentials("uclient", transports=["udp"], secret=secret)
        proc = await asyncio.create_subprocess_exec(
            uclient, "-y", "-n", "1", "-m", "1", "-c", "-z", "5",
            "-u", creds.username, "-w", creds.credential,
            "-p", str(coturn.port), "-L", "127.0.0.1", "127.0.0.1",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        return int(proc.returncode or 0), out.decode(errors="replace")

    (ok_code, ok_out), (bad_code, bad_out) = await asyncio.gather(run(None), run("wrong"))
    assert ok_code == 0, ok_out
    assert "tot_recv_msgs=2" in ok_out and "Total lost packets 0" in ok_out
    assert bad_code != 0 and "Cannot complete Allocation" in bad_out


async def test_unreachable_turn_is_named(server: SignalingServer) -> None:
    dead_tcp = IceServer("turn:127.0.0.1:9?transport=tcp", "u", "p")  # discard port: refused
    ice = IceConfig(ice_servers=(dead_tcp,), ice_transport_policy="relay", connect_timeout=4)
    offerer, answerer, took, error = await pair(server, ice, "dead-tcp")
    try:
        assert isinstance(error, ConnectionError) and took < 4
        (conn,) = offerer.connections.values()
        assert "TURN server unreachable" in str(conn.failure_reason)
    finally:
        await close(offerer, answerer)
    dead_udp = IceServer("turn:127.0.0.1:9?transport=udp", "u", "p")  # nobody answers
    ice = ice.replace(ice_servers=(dead_udp,), turn_timeout=0.5)
    offerer, answerer, took, error = await pair(server, ice, "dead-udp")
    try:
        assert isinstance(error, ConnectionError) and took < 4
        (conn,) = offerer.connections.values()
        assert "TURN server unreachable: no answer from turn:127.0.0.1:9" in str(
            conn.failure_reason
        )
    finally:
        await close(offerer, answerer)


async def test_dead_first_turn_server_delays_nothing_and_every_live_url_relays(
    server: SignalingServer, coturn: Coturn
) -> None:
    """A dead first TURN server (a UDP port that never answers) and coturn behind three
    URLs: relay-only peers connect in < 1 s (the dead server's 2 s timeout delays nothing;
    aiortc alone would only have tried the dead one, rtclab's former first-URL-that-works
    fallback waited for it), the candidates frame has one relay candidate per live URL,
    each labelled with it, and the dead server is named when its own timeout ends."""
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))  # bound, never read: requests vanish, as into a dead host
    dead_url = f"turn:127.0.0.1:{silent.getsockname()[1]}?transport=udp"
    good = coturn.ice_config(["udp", "tcp", "tls"], connect_timeout=5, turn_timeout=2.0)
    ice = good.replace(ice_servers=(IceServer(dead_url, "u", "p"), *good.ice_servers))
    offerer, answerer, took, error = await pair(server, ice, "dead-first")
    try:
        assert error is None, error
        assert took < 1.0, f"connected {took:.2f} s after the offerer joined"
        (conn,) = offerer.connections.values()
        gathered_ms = conn.gathering.elapsed_ms(conn.gathering.finished)
        assert gathered_ms < 1000, gathered_ms
        frame = offerer.candidates()
        relays = frame[(frame["side"] == "local") & (frame["type"] == "relay")]
        live = [coturn.url("udp"), coturn.url("tcp"), coturn.url("tls")]
        assert sorted(relays["url"]) == sorted(live), relays
        by_url = dict(zip(relays["url"], relays["relay_protocol"], strict=True))
        assert by_url == {live[0]: "udp", live[1]: "tcp", live[2]: "tls"}
        assert relays["port"].nunique() == 3  # three allocations, not one candidate thrice
        assert conn.gathering.failures == []  # the dead one has not timed out yet
        await asyncio.sleep(2.3)
        kinds = [(f.kind, f.url) for f in conn.gathering.failures]
        assert kinds == [("turn-unreachable", dead_url)]
        assert "no answer from " + dead_url + " within 2s" in conn.gathering.failures[0].message
        assert offerer.connections[answerer.name].connected_at is not None  # still up
    finally:
        silent.close()
        await close(offerer, answerer)


async def test_policy_all_with_a_broken_turn_connects_on_host_and_says_so(
    server: SignalingServer, coturn: Coturn
) -> None:
    ice = coturn.ice_config(["udp"], policy="all", secret="nope", connect_timeout=5)
    offerer, answerer, _, error = await pair(server, ice, "all-broken-turn")
    try:
        assert error is None
        frame = offerer.candidates()
        assert set(frame[frame["selected"]]["type"]) == {"host"}
        failures = [str(e.value) for e in offerer.events if e.event == "turn-failed"]
        assert failures and "TURN 401" in failures[0]
    finally:
        await close(offerer, answerer)


async def test_without_allow_loopback_peers_the_403_is_named(server: SignalingServer) -> None:
    if shutil.which("turnserver") is None:
        pytest.skip("turnserver not installed (Debian package coturn)")
    async with Coturn(allow_loopback_peers=False, tls=False) as strict:
        ice = strict.ice_config(["udp"], connect_timeout=2.5)
        offerer, answerer, took, error = await pair(server, ice, "no-loopback")
        try:
            assert isinstance(error, ConnectionError) and took < 4
            (conn,) = offerer.connections.values()
            assert "TURN 403 forbidden" in str(conn.failure_reason)
            assert "allow-loopback-peers" in str(conn.failure_reason)
        finally:
            await close(offerer, answerer)


async def test_relay_policy_without_turn_fails_at_once(server: SignalingServer) -> None:
    ice = IceConfig(ice_transport_policy="relay", connect_timeout=5)
    offerer, answerer, took, error = await pair(server, ice, "no-turn")
    try:
        assert isinstance(error, ConnectionError) and took < 1.0
        (conn,) = offerer.connections.values()
        assert "needs a TURN server" in str(conn.failure_reason)
    finally:
        await close(offerer, answerer)


async def test_missing_binary_names_the_debian_package() -> None:
    with pytest.raises(CoturnNotFoundError, match="Debian package `coturn`"):
        await Coturn(binary="/nonexistent/turnserver").start()


async def test_coturn_starts_answers_and_stops_cleanly(tmp_path: Path) -> None:
    if shutil.which("turnserver") is None:
        pytest.skip("turnserver not installed (Debian package coturn)")
    lines: list[str] = []
    turn = Coturn(on_log=lines.append)
    await turn.start()
    try:
        pid, workdir = turn.pid, turn.config_file.parent if turn.config_file else None
        assert pid is not None and workdir is not None
        assert (workdir / "turnserver.conf").stat().st_mode & 0o077 == 0
        conf = (workdir / "turnserver.conf").read_text()
        for option in (
            "use-auth-secret",
            "allow-loopback-peers",
            "listening-ip=127.0.0.1",
            "relay-ip=127.0.0.1",
            "min-port=",
            "realm=rtclab",
            "tls-listening-port=",
        ):
            assert option in conf  # fmt: skip
        assert turn.urls() == [
            f"turn:127.0.0.1:{turn.port}?transport=udp",
            f"turn:127.0.0.1:{turn.port}?transport=tcp",
            f"turns:127.0.0.1:{turn.tls_port}?transport=tcp",
        ]
        assert lines and not any(turn.secret.reveal() in line for line in lines)
    finally:
        await turn.stop()
    assert not turn.running and not workdir.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_lab_browser_peer_gets_the_labs_turn_servers() -> None:
    """lab.browser_peer(...) hands the widget this coturn's UDP/TCP URLs with credentials
    coturn accepts (minted with its secret for the widget's user); none without lab.turn()."""
    if shutil.which("turnserver") is None:
        pytest.skip("turnserver not installed (Debian package coturn)")
    from rtclab.ice.credentials import turn_credential

    async with Lab(name="bp-turn") as lab:
        plain = lab.browser_peer("r", "before")
        assert plain.ice_servers == []
        turn = await lab.turn()
        tab = lab.browser_peer("r", "tab", ice_transport_policy="relay")
        (server,) = tab.ice_servers
        assert server["urls"] == turn.urls(("udp", "tcp"))  # no turns:, browsers distrust the CA
        expiry, _, user = server["username"].partition(":")
        assert user == "tab" and int(expiry) > time.time() + 3600
        assert server["credential"] == turn_credential(turn.secret, server["username"])
        assert tab.ice_transport_policy == "relay"
        assert lab.browser_peer("r", "none", ice_servers=[]).ice_servers == []
    assert not turn.running


def _alive(pid: int) -> bool:
    """A zombie counts as gone: an orphan's exit is reaped by whatever PID 1 is, if at all."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


async def test_coturn_dies_with_a_killed_kernel() -> None:
    """A SIGKILLed process runs no cleanup; its turnserver still goes (PR_SET_PDEATHSIG)."""
    if shutil.which("turnserver") is None:
        pytest.skip("turnserver not installed (Debian package coturn)")
    script = (
        "import asyncio, sys\n"
        "from rtclab.ice.coturn import Coturn\n"
        "async def main():\n"
        "    turn = await Coturn(tls=False, verbose=False).start()\n"
        "    print(turn.pid, flush=True)\n"
        "    await asyncio.sleep(60)\n"
        "asyncio.run(main())\n"
    )
    kernel = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE
    )
    assert kernel.stdout is not None
    pid = int(await asyncio.wait_for(kernel.stdout.readline(), 20))
    assert _alive(pid)
    kernel.kill()
    await kernel.wait()
    await until(lambda: not _alive(pid), 5, "turnserver gone after its starter was killed")
