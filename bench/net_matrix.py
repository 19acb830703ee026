"""The full NAT matrix (5 x 5 presets x {STUN, STUN+TURN}) on the emulated network, timed.

    .venv/bin/python bench/net_matrix.py [--workers 2] [--connect-timeout 3] [--backend netns]

``--backend netns`` (root) runs the same matrix on kernel NAT in network namespaces.

Target (issue #5): < 60 s on 2 cores, outcome as RFC 4787 predicts (no mismatches).
"""

from __future__ import annotations

import argparse
import asyncio

from rtclab.experiments.nat_matrix import nat_matrix


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--connect-timeout", type=float, default=3.0)
    parser.add_argument("--backend", choices=["emulated", "netns"], default="emulated")
    args = parser.parse_args()
    result = await nat_matrix(
        workers=args.workers,
        connect_timeout=args.connect_timeout,
        backends=[args.backend],
        progress=False,
    )
    frame = result.frame
    print(
        f"{len(frame)} scenarios ({args.backend}) in {result.elapsed_s:.1f} s; "
        f"mismatches: {len(result.mismatches)}"
    )
    for servers in ("stun", "stun+turn"):
        print(f"\n{servers}:\n{result.pivot(servers).to_string()}")
    ok = frame[frame["connected"]]
    print(f"\nconnect_ms median {ok['connect_ms'].median():.0f} (max {ok['connect_ms'].max():.0f})")


if __name__ == "__main__":  # spawned worker processes import this module: keep the guard
    asyncio.run(main())
