"""What every experiment repeats, once: a result type, a progress bar, scenarios run here,
in local processes or on a Dask cluster, a peer pair brought up and read (connection row,
selected path, first SCTP round trip)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pandas as pd
from tqdm.auto import tqdm

from .._compat.aiortc import sctp_rtt_ms
from ..ice.inspect import selected_candidate_pair

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from ..peer.connection import RemoteConnection
    from ..peer.peer import Peer

__all__ = [
    "ExperimentResult",
    "connect_pair",
    "path_columns",
    "progress_bar",
    "run_scenarios",
    "settled_sctp_rtt",
]

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class ExperimentResult:
    """A frame of results, the time the experiment took, a figure built on first use and a
    CSV export; unpacks as ``frame, figure`` (subclasses add what they carry)."""

    frame: pd.DataFrame
    elapsed_s: float = field(default=0.0, kw_only=True)
    _figure: go.Figure | None = field(default=None, repr=False, kw_only=True)

    def _make_figure(self) -> go.Figure:
        raise NotImplementedError

    @property
    def figure(self) -> go.Figure:
        if self._figure is None:
            self._figure = self._make_figure()
        return self._figure

    def to_csv(self, path: str | Path) -> Path:
        """Write :attr:`frame` (one row per run) to ``path``; returns it."""
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        self.frame.to_csv(out, index=False)
        return out

    def __iter__(self) -> Iterator[Any]:
        yield self.frame
        yield self.figure


def progress_bar(total: int, desc: str, unit: str, enabled: bool = True) -> tqdm[Any]:
    """A tqdm bar: a widget in Jupyter (``tqdm.auto``), text on stderr elsewhere; ``update``
    it with ``set_postfix_str(label)`` then ``update(1)``. Disabled: a silent no-op bar."""
    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled)


async def run_scenarios(
    items: Sequence[T],
    *,
    here: Callable[[list[T], Callable[[R], None]], Awaitable[list[R]]],
    batch: Callable[[list[T]], list[R]],
    batch_size: int = 1,
    client: Any = None,
    workers: int | None = 0,
    desc: str,
    unit: str,
    postfix: Callable[[R], str] = str,
    progress: bool = True,
) -> list[R]:
    """Run every item, one result each, in ``items``' order, with a progress bar.

    ``here(items, done)`` runs them all in this event loop (a Jupyter kernel's included),
    calling ``done(result)`` as each finishes. Otherwise items go in batches of
    ``batch_size`` to ``batch``, a picklable function that runs one batch in a fresh event
    loop: on a Dask ``client``'s cluster, or in ``workers`` local processes (``None``: one
    per CPU). ``workers=0``, or fewer items than one batch, stays here: a process would
    only add its start-up time.
    """
    bar = progress_bar(len(items), desc, unit, progress)

    def done(result: R) -> None:
        bar.set_postfix_str(postfix(result))
        bar.update(1)

    batches = [list(items[i : i + batch_size]) for i in range(0, len(items), batch_size)]
    results: list[list[R]] = [[] for _ in batches]
    try:
        if client is None and (workers == 0 or len(batches) <= 1):
            return await here(list(items), done)
        if client is not None:
            from distributed import as_completed

            futures = client.map(batch, batches, pure=False)
            index = {future.key: i for i, future in enumerate(futures)}
            completed = as_completed(futures)  # type: ignore[no-untyped-call]
            # the iterator blocks: each wait in a thread, so the loop (and the bar) go on
            while (future := await asyncio.to_thread(next, completed, None)) is not None:
                rows = await asyncio.to_thread(future.result)
                results[index[future.key]] = rows
                for row in rows:
                    done(row)
        else:
            import concurrent.futures
            import multiprocessing

            # spawn, not fork: the caller may be a Jupyter kernel with threads and a loop
            context = multiprocessing.get_context("spawn")
            count = min(workers or os.cpu_count() or 1, len(batches))
            loop = asyncio.get_running_loop()
            with concurrent.futures.ProcessPoolExecutor(count, mp_context=context) as pool:

                async def one(i: int) -> None:
                    results[i] = await loop.run_in_executor(pool, batch, batches[i])
                    for row in results[i]:
                        done(row)

                await asyncio.gather(*(one(i) for i in range(len(batches))))
    finally:
        bar.close()
    return [row for rows in results for row in rows]


async def connect_pair(
    answerer: Peer, offerer: Peer, *, timeout: float, both: bool = False
) -> str | None:
    """Join ``answerer``, then ``offerer`` (the joiner offers) and wait until the offerer's
    connection (with ``both``, the answerer's too) is usable; the failure reason, or
    ``None`` once connected. Never raises for a failed connect: a failure is a result."""
    await answerer.join()
    await offerer.join()
    try:
        await offerer.wait_connected(count=1, timeout=timeout)
        if both:
            await answerer.wait_connected(count=1, timeout=timeout)
    except (ConnectionError, TimeoutError) as exc:
        return str(exc)
    return None


def path_columns(conn: RemoteConnection) -> dict[str, Any]:
    """The selected candidate pair of ``conn`` as result columns (empty before one is)."""
    pair = selected_candidate_pair(conn.pc)
    return {} if pair is None else dict(pair.columns())


async def settled_sctp_rtt(
    conn: RemoteConnection, began: float, settle_seconds: float
) -> float | None:
    """The SCTP smoothed RTT once ``settle_seconds`` have passed since ``began`` (monotonic):
    the data channels' open handshake gives SCTP its first sample, later ones smooth it.
    Waits at most a second past the settle time; ``None`` if SCTP has no sample by then."""
    deadline = time.monotonic() + settle_seconds + 1.0
    rtt = None
    while time.monotonic() < deadline:
        rtt = sctp_rtt_ms(conn.pc)
        if rtt is not None and time.monotonic() - began > settle_seconds:
            break
        await asyncio.sleep(0.05)
    return rtt
