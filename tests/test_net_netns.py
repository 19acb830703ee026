"""The Linux-namespace backend: kernel NAT seen by RFC 5780 probes, the matrix on real NAT,
and nothing left behind (root only; CI runs these as root)."""

from __future__ import annotations

import os
import subprocess

import pytest

from rtclab.net import netns
from rtclab.net.netns import NETNS_PRESETS, NetnsNetwork, NetnsUnavailable, require_netns

pytestmark = pytest.mark.netns


def _available() -> str | None:
    try:
        require_netns()
    except NetnsUnavailable as exc:
        return str(exc)
    return None


needs_root = pytest.mark.skipif(_available() is not None, reason=str(_available()))


def _ours() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith("rtclab-")]


def _routes(namespace: str) -> str:
    return subprocess.run(["ip", "-n", namespace, "route"], capture_output=True, text=True).stdout


def _root_links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    return {line.split(":")[1].strip() for line in out.splitlines()}


def test_clear_error_when_not_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(NetnsUnavailable, match="root"):
        require_netns()


@needs_root
async def test_kernel_nat_probes_match_presets_and_coturn_agrees() -> None:
    links_before = _root_links()
    with NetnsNetwork() as net:
        hosts = {p: net.host(p, p) for p in NETNS_PRESETS}
        seen = {p: await net.discover(h) for p, h in hosts.items()}
        tool = await net.natdiscovery(hosts["symmetric"])
        with pytest.raises(NetnsUnavailable, match="emulated"):
            net.host("fc", "full-cone")
        # no namespace of ours routes anywhere but to our own bridge and routers
        for host in hosts.values():
            routes = _routes(host.namespace)
            assert "203.0.113." in routes or "10.0." in routes
        names = list(net._namespaces)
    assert seen["open"]["mapping"] == "endpoint-independent"
    assert seen["open"]["filtering"] == "endpoint-independent"
    assert seen["port-restricted-cone"]["mapping"] == "endpoint-independent"
    assert seen["port-restricted-cone"]["filtering"] == "address-and-port-dependent"
    assert seen["symmetric"]["mapping"] == "address-and-port-dependent"
    assert seen["symmetric"]["filtering"] == "address-and-port-dependent"
    assert "Address and Port Dependent Mapping" in tool
    assert "Address and Port Dependent Filtering" in tool
    # everything it made is gone, and the machine's own namespace never changed
    assert not set(names) & set(_ours())
    assert _root_links() == links_before


@needs_root
async def test_matrix_on_kernel_nat_matches_the_emulated_one() -> None:
    from rtclab.experiments.nat_matrix import nat_matrix

    presets = ["port-restricted-cone", "symmetric"]
    result = await nat_matrix(
        presets,
        backends=["emulated", "netns"],
        workers=0,
        concurrency=4,
        connect_timeout=6.0,
        progress=False,
    )
    frame = result.frame
    assert result.mismatches.empty, result.mismatches[["a", "b", "servers", "backend", "error"]]
    by = frame.pivot_table(
        index=["a", "b", "servers"],
        columns="backend",
        values="connected",
        aggfunc="first",
        observed=True,
    )
    assert (by["emulated"] == by["netns"]).all()
    assert not _ours()


@needs_root
def test_stale_namespaces_are_removed_and_cleanup_runs_on_failure() -> None:
    stale = "rtclab-999999-1-pub"  # a pid that cannot exist
    subprocess.run(["ip", "netns", "add", stale], check=True)
    try:
        assert stale in netns.cleanup_stale()
    finally:
        subprocess.run(["ip", "netns", "del", stale], capture_output=True)
    with pytest.raises(RuntimeError, match="boom"), NetnsNetwork() as net:
        net.host("x", "symmetric")
        raise RuntimeError("boom")
    assert not _ours()
