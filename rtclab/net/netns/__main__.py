"""``python -m rtclab.net.netns cleanup``: remove namespaces whose creating process is gone."""

from __future__ import annotations

import sys

from ._system import cleanup_stale


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["cleanup"]:
        for name in cleanup_stale():
            print("removed", name)
        return 0
    print("usage: python -m rtclab.net.netns cleanup", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
