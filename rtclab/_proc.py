"""Child processes that do not outlive the Python process that started them.

A kernel killed with SIGKILL (Jupyter's "restart", an OOM kill) runs no ``finally`` and no
``atexit``: a turnserver or a namespace peer it started would keep its ports and
namespaces. Linux's ``PR_SET_PDEATHSIG`` makes the kernel signal the child instead.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import signal
import sys
from collections.abc import Callable

__all__ = ["die_with_parent"]

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


@functools.cache
def _prctl() -> Callable[..., int] | None:
    """libc's ``prctl``, looked up in the parent (the child after ``fork`` should only call)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` for ``subprocess.Popen`` / ``asyncio.create_subprocess_exec``: the
    child gets ``sig`` when its parent dies, however it dies. ``None`` (no ``preexec_fn``)
    where there is no ``prctl`` (not Linux).

    The kernel sends it when the *thread* that started the child ends, so start the child
    from a thread that lives as long as the child should (the event loop's, not a pool's).
    It survives ``exec`` (``ip netns exec`` included) unless the child changes its user.
    """
    prctl = _prctl()
    if prctl is None:
        return None
    parent = os.getpid()

    def set_death_signal() -> None:
        prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl: no signal will come
            os.kill(os.getpid(), sig)

    return set_death_signal
