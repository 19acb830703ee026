"""The stats poller: peers -> snapshots -> rows, every ``interval`` seconds.

Runs as a task in the *running* loop (a Jupyter kernel's), never ``asyncio.run``. Each
poll reads every connection concurrently (:mod:`.reading`), converts with the pure
:func:`~rtclab.stats.convert.snapshot_to_rows` and hands the rows to a
:class:`~rtclab.stats.store.SampleStore` (bounded memory, spill, CSV/Parquet); frames are
built only when asked for, so polling stays cheap.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..model import CandidatePair, ConnectionCounters
from ..net.emulated import Host
from ..qoe.aggregate import interval_qoe
from .convert import NUMERIC_COLUMNS, STRING_COLUMNS, ConnectionSnapshot, snapshot_to_rows
from .hidden import browser_audio_mos
from .reading import read_snapshot
from .store import RunFrames, SampleStore

if TYPE_CHECKING:
    from aiortc import RTCPeerConnection

__all__ = ["SampleListener", "StatsCollector", "StatsSource"]

logger = logging.getLogger(__name__)

SampleListener = Callable[[list[dict[str, Any]]], object]

_KINDS = frozenset(("audio", "video", "data", "transport"))
_DIRECTIONS = frozenset(("inbound", "outbound"))
#: string columns with a closed set of values (W3C enums): anything else arrives as None
_STRING_VALUES: dict[str, frozenset[str]] = {
    "quality_limitation_reason": frozenset({"none", "cpu", "bandwidth", "other"}),
}


class StatsSource(Protocol):
    """What a Peer provides to be polled (structural, so the stats layer never imports Peer)."""

    @property
    def name(self) -> str: ...

    def stats_targets(self) -> Iterable[tuple[str, RTCPeerConnection, ConnectionCounters]]:
        """``(remote, pc, counters)`` for every live connection of this peer."""
        ...


@dataclass
class _TargetState:
    """What the poller remembers per (peer, remote) between polls."""

    pc_id: int
    previous: ConnectionSnapshot | None = None
    pair: CandidatePair | None = None
    error: str | None = None
    closed_sampled: bool = False
    seen: bool = field(default=True, repr=False)


def _link_status(source: StatsSource) -> dict[str, Any] | None:
    """The impaired link a peer sits behind, now (an emulated host's; else none)."""
    host = getattr(source, "network", None)
    if not isinstance(host, Host):
        return None
    now = asyncio.get_running_loop().time()  # the emulated network's clock
    return {"up": host.up.status(now), "down": host.down.status(now)}


class StatsCollector(RunFrames):
    """Poll every added source every ``interval`` seconds into a samples and an events table.

    ``timeout`` bounds one target's snapshot (default ``max(interval, 1.0)``): a target that
    takes longer is skipped for that sample (event ``stats-timeout``) and the others are not
    held up, because targets are polled concurrently.
    """

    def __init__(
        self,
        interval: float = 1.0,
        *,
        window: float | None = 600.0,
        max_rows: int | None = 200_000,
        spill_path: str | Path | None = None,
        timeout: float | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be > 0")
        self.interval = float(interval)
        self.store = SampleStore(window=window, max_rows=max_rows, spill_path=spill_path)
        self.timeout = float(timeout) if timeout is not None else max(self.interval, 1.0)
        self._sources: list[StatsSource] = []
        self._targets: dict[tuple[str, str], _TargetState] = {}
        self._listeners: list[SampleListener] = []
        self._task: asyncio.Task[None] | None = None
        self._lock: asyncio.Lock | None = None
        self._t0: float | None = None
        self._frames_taken: dict[int, int] = {}  # id(source) -> its frames_total taken

    # -- sources and listeners ---------------------------------------------------------

    def add(self, source: StatsSource) -> None:
        """Start polling ``source`` (adding it twice is a no-op)."""
        if not any(s is source for s in self._sources):
            self._sources.append(source)

    def remove(self, source: StatsSource) -> None:
        """Stop polling ``source`` and forget its previous snapshots."""
        self._sources = [s for s in self._sources if s is not source]
        names = {s.name for s in self._sources}
        for key in [k for k in self._targets if k[0] not in names]:
            del self._targets[key]

    def on_sample(self, callback: SampleListener) -> Callable[[], None]:
        """Call ``callback(new_rows)`` after each poll; returns a function that unsubscribes.

        Callbacks run in the loop, synchronously: keep them short (schedule work instead).
        """
        self._listeners.append(callback)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(callback)

        return unsubscribe

    def record_event(self, peer: str, remote: str | None, event: str, value: Any = None) -> None:
        """Append an event (state change, candidate gathered, error, ...) stamped now (UTC)."""
        self.store.append_event(
            {
                "t": datetime.now(timezone.utc),
                "peer": peer,
                "remote": remote,
                "event": event,
                "value": value,
            }
        )

    def add_rows(
        self, rows: Iterable[Mapping[str, Any]], *, peer: str, own_mos: bool = False
    ) -> list[dict[str, Any]]:
        """Append rows measured elsewhere (a browser's own getStats) as ``peer``'s, stamped now.

        The producer must already use this frame's units (``jitter_ms``, ``fraction_lost``
        0-1, ``bitrate_kbps`` from its own deltas); here rows are only made safe to mix in:
        unknown columns dropped, ``t``/``elapsed_s``/``peer`` set by us (a client cannot
        back-date or impersonate), numbers coerced to float (anything else -> ``None``),
        strings to ``str``, and rows without a valid ``kind``/``direction``/``remote``
        skipped. Inbound audio rows get ``mos`` from the report's RTT, loss and
        ``jitter_buffer_ms`` (:func:`~rtclab.stats.hidden.browser_audio_mos`). Sample
        listeners (dashboards) hear the accepted rows; they are returned. ``own_mos``: the
        rows come from rtclab's own peers in another process (a lab worker), whose ``mos``
        :mod:`.convert` already computed from what only the receiver knows: keep it.
        """
        now_mono = time.monotonic()
        if self._t0 is None:
            self._t0 = now_mono
        elapsed = now_mono - self._t0
        now = datetime.now(timezone.utc)
        accepted: list[dict[str, Any]] = []
        jitter_buffer_ms: dict[int, float] = {}
        for raw in rows:
            if raw.get("kind") not in _KINDS or raw.get("direction") not in _DIRECTIONS:
                continue
            remote = raw.get("remote")
            if not isinstance(remote, str) or not remote:
                continue
            row: dict[str, Any] = {"t": now, "elapsed_s": elapsed, "peer": peer}
            for column in NUMERIC_COLUMNS:
                if column == "elapsed_s":
                    continue
                value = raw.get(column)
                number = (
                    float(value)
                    if isinstance(value, (int, float)) and not isinstance(value, bool)
                    else math.nan
                )
                row[column] = number if math.isfinite(number) else None
            for column in STRING_COLUMNS:
                if column == "peer":
                    continue
                value = raw.get(column)
                text = None if value is None or value == "" else str(value)
                allowed = _STRING_VALUES.get(column)
                row[column] = text if allowed is None or text in allowed else None
            buffered = raw.get("jitter_buffer_ms")
            if isinstance(buffered, (int, float)) and 0 <= buffered < 10_000:
                jitter_buffer_ms[len(accepted)] = float(buffered)
            accepted.append(row)
        if not own_mos:
            browser_audio_mos(accepted, jitter_buffer_ms)
        if accepted:
            self.store.append_rows(accepted, elapsed)
            self._notify(accepted)
        return accepted

    def _notify(self, rows: list[dict[str, Any]]) -> None:
        """Hand new rows to every sample listener; a failing one is logged, never fatal."""
        for listener in list(self._listeners):
            try:
                listener(rows)
            except Exception:
                logger.exception("stats listener %r failed", listener)

    # -- polling -----------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Start polling in the running loop (returns at once; idempotent)."""
        if self.running:
            return
        self._task = asyncio.get_running_loop().create_task(self._run(), name="rtclab-stats")

    async def stop(self) -> None:
        """Cancel the polling task and wait for it to end (idempotent)."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        # asyncio.wait does not raise the task's CancelledError, so a cancellation of *this*
        # coroutine still propagates while the poller's own cancellation is absorbed.
        await asyncio.wait({task})
        if not task.cancelled() and task.exception() is not None:
            logger.warning("stats poller ended with %r", task.exception())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        while True:
            try:
                await self.poll()
            except Exception:  # a poll must never kill the poller
                logger.exception("stats poll failed")
            next_tick += self.interval
            delay = next_tick - loop.time()
            if delay < 0:  # fell behind (slow poll, suspended kernel): skip, don't burst
                next_tick = loop.time()
                delay = 0
            await asyncio.sleep(delay)

    async def poll(self) -> list[dict[str, Any]]:
        """Sample every target of every source now; append and return the new rows."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            now_mono = time.monotonic()
            if self._t0 is None:
                self._t0 = now_mono
            elapsed = now_mono - self._t0
            now = datetime.now(timezone.utc)

            for state in self._targets.values():
                state.seen = False
            # each job holds its target's state: a source removed while the snapshots are
            # awaited (lab.stop, a peer leaving) still gets the rows it was measured for
            jobs: list[tuple[tuple[str, str], _TargetState, Any, ConnectionCounters, Any]] = []
            for source in list(self._sources):
                try:
                    targets = list(source.stats_targets())
                except Exception as exc:
                    self._state((source.name, ""), None).seen = True
                    self._note_error((source.name, ""), source.name, None, exc)
                    continue
                link = _link_status(source)
                for remote, pc, counters in targets:
                    key = (source.name, remote)
                    state = self._state(key, pc)
                    state.seen = True
                    jobs.append((key, state, pc, counters, link))

            snapshots = await asyncio.gather(
                *(
                    self._snapshot_with_timeout(key, st, pc, c, now, link)
                    for key, st, pc, c, link in jobs
                )
            )

            rows: list[dict[str, Any]] = []
            for (key, state, _, _, _), snapshot in zip(jobs, snapshots, strict=True):
                if snapshot is None:
                    continue
                self._note_pair(key, state, snapshot.candidate_pair)
                rows.extend(
                    snapshot_to_rows(
                        snapshot,
                        state.previous,
                        elapsed_s=elapsed,
                        min_interval_s=self.interval / 2,
                    )
                )
                state.previous = snapshot
            for key in [k for k, s in self._targets.items() if not s.seen]:
                del self._targets[key]  # connection gone: don't keep its snapshot forever
            self._add_frames(rows)
            self.store.append_rows(rows, elapsed)
        self._notify(rows)
        return rows

    def _add_frames(self, rows: list[dict[str, Any]]) -> None:
        """Take each source's new ``frames`` rows (peers with QoE on keep them in
        ``frame_rows``/``frames_total``), store them and fill the interval's QoE columns of
        the matching inbound video rows."""
        inbound = {
            (r["peer"], r["remote"]): r
            for r in rows
            if r.get("kind") == "video" and r.get("direction") == "inbound"
        }
        for source in list(self._sources):
            log = getattr(source, "frame_rows", None)
            total = getattr(source, "frames_total", None)
            if log is None or not isinstance(total, int):
                continue
            new = min(total - self._frames_taken.get(id(source), 0), len(log))
            self._frames_taken[id(source)] = total
            if new <= 0:
                continue
            frames = list(itertools.islice(reversed(log), new))[::-1]  # not the whole log
            self.store.append_frames(frames)
            by_remote: dict[str, list[dict[str, Any]]] = {}
            for frame in frames:
                by_remote.setdefault(frame["remote"], []).append(frame)
            for remote, group in by_remote.items():
                row = inbound.get((source.name, remote))
                if row is not None:
                    row.update(interval_qoe(group))

    async def _snapshot_with_timeout(
        self,
        key: tuple[str, str],
        state: _TargetState,
        pc: Any,
        counters: ConnectionCounters,
        now: datetime,
        link: Mapping[str, Any] | None = None,
    ) -> ConnectionSnapshot | None:
        if state.closed_sampled:
            return None  # a closed pc was sampled once; its numbers can no longer change
        try:
            snapshot = await asyncio.wait_for(
                read_snapshot(key[0], key[1], pc, counters, now, link), self.timeout
            )
        except asyncio.TimeoutError:
            self.record_event(key[0], key[1], "stats-timeout", self.timeout)
            return None
        except Exception as exc:
            self._note_error(key, key[0], key[1], exc)
            return None
        state.error = None
        state.closed_sampled = snapshot.connection_state == "closed"
        return snapshot

    def _state(self, key: tuple[str, str], pc: Any) -> _TargetState:
        """The remembered state for ``key``, reset when the pc behind it was replaced."""
        state = self._targets.get(key)
        if state is None or state.pc_id != id(pc):
            state = self._targets[key] = _TargetState(pc_id=id(pc))
        return state

    def _note_error(
        self, key: tuple[str, str], peer: str, remote: str | None, exc: BaseException
    ) -> None:
        """Record a stats error once per distinct message, not once per poll."""
        message = f"{type(exc).__name__}: {exc}"
        state = self._targets.get(key)
        if state is not None:
            if state.error == message:
                return
            state.error = message
        logger.debug("stats error for %s: %s", key, message)
        self.record_event(peer, remote, "stats-error", message)

    def _note_pair(
        self, key: tuple[str, str], state: _TargetState, pair: CandidatePair | None
    ) -> None:
        """Record ``pair-changed`` when the path moves (renomination, ICE restart).

        The first pair is not recorded here: Peers emit ``selected-pair`` when they connect,
        and the path columns of every row carry it anyway.
        """
        if pair is None:
            return
        if state.pair is not None and pair != state.pair:
            self.record_event(key[0], key[1], "pair-changed", pair.describe())
        state.pair = pair

    # -- storage (see SampleStore) -----------------------------------------------------

    @property
    def window(self) -> float | None:
        return self.store.window

    @property
    def max_rows(self) -> int | None:
        return self.store.max_rows

    @property
    def spill_path(self) -> Path | None:
        return self.store.spill_path

    def recent_rows(self, count: int = 500) -> list[dict[str, Any]]:
        """The newest ``count`` sample rows, newest first (see :meth:`SampleStore.recent_rows`)."""
        return self.store.recent_rows(count)

    def rows_within(self, window_s: float) -> list[dict[str, Any]]:
        """The rows of the last ``window_s`` seconds (see :meth:`SampleStore.rows_within`)."""
        return self.store.rows_within(window_s)

    @property
    def frames_source(self) -> SampleStore:
        return self.store

    def clear(self) -> None:
        """Forget all rows and events, spilled ones too (not the previous snapshots: rates
        continue)."""
        self.store.clear()

    def to_csv(self, directory: str | Path) -> dict[str, Path]:
        """Write ``samples.csv``, ``events.csv`` and ``frames.csv`` (:meth:`SampleStore.to_csv`)."""
        return self.store.to_csv(directory)

    def to_parquet(self, directory: str | Path) -> dict[str, Path]:
        """Write the whole run as Parquet (:meth:`SampleStore.to_parquet`); needs pyarrow."""
        return self.store.to_parquet(directory)
