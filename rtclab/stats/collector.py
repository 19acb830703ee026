"""The stats poller: peers -> snapshots -> rows -> pandas; CSV/Parquet export.

Runs as a task in the *running* loop (a Jupyter kernel's), never ``asyncio.run``. Rows are
kept as plain dicts in a bounded deque and a DataFrame is built only when asked for, so
polling stays cheap. Memory is bounded by ``window`` (seconds of ``elapsed_s``) and
``max_rows``; with ``spill_path`` the evicted rows are appended to that CSV (samples) and to
``<stem>.events.csv`` beside it (events), and :attr:`~StatsCollector.samples`,
:attr:`~StatsCollector.events`, ``to_csv`` and ``to_parquet`` read them back: the window then
bounds memory and live views only, never what the run returns. (``Lab`` always gives its
collector a spill file.) Without ``spill_path`` evicted rows are gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import csv
import dataclasses
import itertools
import json
import logging
import math
import operator
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from rtclab._compat.aiortc import (
    dtls_transport_stats,
    receiver_rtx_ssrcs,
    receiver_streams,
    sctp_rtt_ms,
    transceiver_codecs,
)
from rtclab.ice.inspect import CandidatePair, dtls_transports, selected_candidate_pair
from rtclab.stats.convert import (
    EVENT_COLUMNS,
    NUMERIC_COLUMNS,
    SAMPLE_COLUMNS,
    STRING_COLUMNS,
    ConnectionSnapshot,
    snapshot_to_rows,
)

if TYPE_CHECKING:
    from aiortc import RTCPeerConnection

    from rtclab.peer.counters import ConnectionCounters

__all__ = [
    "SampleListener",
    "StatsCollector",
    "StatsSource",
    "read_events_csv",
    "read_events_parquet",
    "read_samples_csv",
    "read_samples_parquet",
]

logger = logging.getLogger(__name__)

SampleListener = Callable[[list[dict[str, Any]]], object]

_KINDS = frozenset(("audio", "video", "data", "transport"))
_DIRECTIONS = frozenset(("inbound", "outbound"))

_ROW_GETTER = operator.itemgetter(*SAMPLE_COLUMNS)
_TRANSPORT_FIELDS = ("bytesSent", "bytesReceived", "packetsSent", "packetsReceived")


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


class StatsCollector:
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
        if window is not None and window <= 0:
            raise ValueError("window must be > 0 or None")
        if max_rows is not None and max_rows < 1:
            raise ValueError("max_rows must be >= 1 or None")
        self.interval = float(interval)
        self.window = window
        self.max_rows = max_rows
        self.spill_path = Path(spill_path) if spill_path is not None else None
        self.timeout = float(timeout) if timeout is not None else max(self.interval, 1.0)
        self._sources: list[StatsSource] = []
        self._rows: deque[dict[str, Any]] = deque()
        self._events: deque[dict[str, Any]] = deque()
        self._targets: dict[tuple[str, str], _TargetState] = {}
        self._listeners: list[SampleListener] = []
        self._task: asyncio.Task[None] | None = None
        self._lock: asyncio.Lock | None = None
        self._t0: float | None = None

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

    def recent_rows(self, count: int = 500) -> list[dict[str, Any]]:
        """The newest ``count`` sample rows, newest first, as dicts (no DataFrame built):
        cheap enough to call from a loop that waits for a condition."""
        return list(itertools.islice(reversed(self._rows), count))

    def rows_within(self, window_s: float) -> list[dict[str, Any]]:
        """The sample rows of the last ``window_s`` seconds (by ``elapsed_s``), oldest first:
        what a live view backfills when it opens, without building a DataFrame."""
        if not self._rows:
            return []
        latest = self._rows[-1].get("elapsed_s")
        if not isinstance(latest, (int, float)):
            return []
        recent: list[dict[str, Any]] = []
        for row in reversed(self._rows):
            elapsed = row.get("elapsed_s")
            if isinstance(elapsed, (int, float)) and elapsed < latest - window_s:
                break
            recent.append(row)
        recent.reverse()
        return recent

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
        self._events.append(
            {
                "t": datetime.now(timezone.utc),
                "peer": peer,
                "remote": remote,
                "event": event,
                "value": value,
            }
        )
        if self.max_rows is not None and len(self._events) > self.max_rows:
            evicted = [self._events.popleft() for _ in range(len(self._events) - self.max_rows)]
            if self.spill_path is not None:
                _append_csv_rows(self._events_spill_path(), EVENT_COLUMNS, evicted)

    def add_rows(self, rows: Iterable[Mapping[str, Any]], *, peer: str) -> list[dict[str, Any]]:
        """Append rows measured elsewhere (a browser's own getStats) as ``peer``'s, stamped now.

        The producer must already use this frame's units (``jitter_ms``, ``fraction_lost``
        0-1, ``bitrate_kbps`` from its own deltas); here rows are only made safe to mix in:
        unknown columns dropped, ``t``/``elapsed_s``/``peer`` set by us (a client cannot
        back-date or impersonate), numbers coerced to float (anything else -> ``None``),
        strings to ``str``, and rows without a valid ``kind``/``direction``/``remote``
        skipped. Sample listeners (dashboards) hear the accepted rows; they are returned.
        """
        now_mono = time.monotonic()
        if self._t0 is None:
            self._t0 = now_mono
        elapsed = now_mono - self._t0
        now = datetime.now(timezone.utc)
        accepted: list[dict[str, Any]] = []
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
                row[column] = None if value is None or value == "" else str(value)
            accepted.append(row)
        if accepted:
            self._append_rows(accepted, elapsed)
            for listener in list(self._listeners):
                try:
                    listener(accepted)
                except Exception:
                    logger.exception("stats listener %r failed", listener)
        return accepted

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
            jobs: list[tuple[tuple[str, str], Any, ConnectionCounters]] = []
            for source in list(self._sources):
                try:
                    targets = list(source.stats_targets())
                except Exception as exc:
                    self._state((source.name, ""), None).seen = True
                    self._note_error((source.name, ""), source.name, None, exc)
                    continue
                for remote, pc, counters in targets:
                    key = (source.name, remote)
                    self._state(key, pc).seen = True
                    jobs.append((key, pc, counters))

            snapshots = await asyncio.gather(
                *(self._snapshot_with_timeout(key, pc, counters, now) for key, pc, counters in jobs)
            )

            rows: list[dict[str, Any]] = []
            for (key, _, _), snapshot in zip(jobs, snapshots, strict=True):
                if snapshot is None:
                    continue
                state = self._targets[key]
                self._note_pair(key, state, snapshot.candidate_pair)
                rows.extend(snapshot_to_rows(snapshot, state.previous, elapsed_s=elapsed))
                state.previous = snapshot
            for key in [k for k, s in self._targets.items() if not s.seen]:
                del self._targets[key]  # connection gone: don't keep its snapshot forever

            self._append_rows(rows, elapsed)
        for listener in list(self._listeners):
            try:
                listener(rows)
            except Exception:
                logger.exception("stats listener %r failed", listener)
        return rows

    async def _snapshot_with_timeout(
        self, key: tuple[str, str], pc: Any, counters: ConnectionCounters, now: datetime
    ) -> ConnectionSnapshot | None:
        state = self._targets[key]
        if state.closed_sampled:
            return None  # a closed pc was sampled once; its numbers can no longer change
        try:
            snapshot = await asyncio.wait_for(self._snapshot(key, pc, counters, now), self.timeout)
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

    async def _snapshot(
        self, key: tuple[str, str], pc: Any, counters: ConnectionCounters, now: datetime
    ) -> ConnectionSnapshot:
        state = str(getattr(pc, "connectionState", "unknown"))
        report: Mapping[str, Any] = {}
        if state != "closed":
            report = _inbound_rtp_per_ssrc(pc, dict(await pc.getStats()))
        # read everything else right after getStats so counters and report are simultaneous
        monotonic = time.monotonic()
        return ConnectionSnapshot(
            peer=key[0],
            remote=key[1],
            t=now,
            monotonic=monotonic,
            report=report,
            transport=_transport_totals(pc),
            candidate_pair=selected_candidate_pair(pc),
            counters=copy.deepcopy(counters),
            connection_state=state,
            sctp_rtt_ms=_sctp_rtt_ms(pc),
            clock_rates=_clock_rates(pc),
        )

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
            self.record_event(key[0], key[1], "pair-changed", _describe_pair(pair))
        state.pair = pair

    def _append_rows(self, rows: list[dict[str, Any]], elapsed: float) -> None:
        self._rows.extend(rows)
        evicted: list[dict[str, Any]] = []
        if self.window is not None:
            cutoff = elapsed - self.window
            while self._rows and self._rows[0]["elapsed_s"] < cutoff:
                evicted.append(self._rows.popleft())
        if self.max_rows is not None:
            while len(self._rows) > self.max_rows:
                evicted.append(self._rows.popleft())
        if evicted and self.spill_path is not None:
            _append_csv_rows(self.spill_path, SAMPLE_COLUMNS, evicted)

    def _events_spill_path(self) -> Path:
        assert self.spill_path is not None
        return self.spill_path.with_name(self.spill_path.stem + ".events.csv")

    # -- frames and export -------------------------------------------------------------

    def _spilled(self, path: Path | None) -> Path | None:
        if path is None or not path.exists() or path.stat().st_size == 0:
            return None
        return path

    @property
    def samples(self) -> pd.DataFrame:
        """Every row of the run (spilled ones read back first), ``SAMPLE_COLUMNS`` order;
        ``t`` UTC, numbers float64."""
        memory = _samples_frame(self._rows)
        spill = self._spilled(self.spill_path)
        if spill is None:
            return memory
        frame: pd.DataFrame = pd.concat([read_samples_csv(spill), memory], ignore_index=True)
        return frame

    @property
    def events(self) -> pd.DataFrame:
        """Every event of the run, ``EVENT_COLUMNS`` order; ``value`` as recorded (spilled
        ones as :func:`read_events_csv` decodes them)."""
        memory = _events_frame(self._events)
        spill = self._spilled(self._events_spill_path()) if self.spill_path else None
        if spill is None:
            return memory
        frame: pd.DataFrame = pd.concat([read_events_csv(spill), memory], ignore_index=True)
        return frame

    def clear(self) -> None:
        """Forget all rows and events, spilled ones too (not the previous snapshots: rates
        continue)."""
        self._rows.clear()
        self._events.clear()
        if self.spill_path is not None:
            for path in (self.spill_path, self._events_spill_path()):
                path.unlink(missing_ok=True)

    def to_csv(self, directory: str | Path) -> dict[str, Path]:
        """Write ``samples.csv`` and ``events.csv`` (the whole run) into ``directory``.

        Streamed: the spill file is copied and the rows in memory appended, so no frame of
        the whole run is built. Plain ``pd.read_csv`` works on both (see the README:
        ``parse_dates=["t"]``); :func:`read_samples_csv` / :func:`read_events_csv` give back
        exactly the dtypes of :attr:`samples` / :attr:`events`.
        """
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"samples": out / "samples.csv", "events": out / "events.csv"}
        spills = (self.spill_path, self._events_spill_path() if self.spill_path else None)
        parts = zip(
            (paths["samples"], paths["events"]),
            spills,
            (SAMPLE_COLUMNS, EVENT_COLUMNS),
            (self._rows, self._events),
            strict=True,
        )
        for path, spill, columns, rows in parts:
            spilled = self._spilled(spill)
            if spilled is not None:
                shutil.copyfile(spilled, path)
            else:
                path.write_text("")
            _append_csv_rows(path, columns, list(rows))
        return paths

    def to_parquet(self, directory: str | Path) -> dict[str, Path]:
        """Write ``samples.parquet`` and ``events.parquet`` (the whole run); needs pyarrow."""
        _require_pyarrow()
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"samples": out / "samples.parquet", "events": out / "events.parquet"}
        self.samples.to_parquet(paths["samples"], index=False, engine="pyarrow")
        events = self.events
        events["value"] = [_event_cell(v) or None for v in events["value"]]
        events.to_parquet(paths["events"], index=False, engine="pyarrow")
        return paths


def _describe_pair(pair: CandidatePair) -> str:
    relay = f" (relay over {pair.relay_protocol})" if pair.relay_protocol else ""
    return (
        f"{pair.local_candidate_type}/{pair.remote_candidate_type} {pair.protocol}{relay} "
        f"{pair.local_address} -> {pair.remote_address}"
    )


# -- reading pc internals (defensively: never raise from a poll) --------------------------


def _transport_totals(pc: Any) -> dict[str, Any] | None:
    """DTLS transport counters summed over the pc's transports (one with bundle)."""
    totals: dict[str, Any] | None = None
    for dtls in dtls_transports(pc):
        report = dtls_transport_stats(dtls)
        if report is None:
            continue
        for stats in report.values():
            if getattr(stats, "type", None) != "transport":
                continue
            if totals is None:
                totals = dict.fromkeys(_TRANSPORT_FIELDS, 0)
            for name in list(totals):
                totals[name] += int(getattr(stats, name, 0) or 0)
    return totals


#: aiortc's SCTP smoothed RTT in ms (the experiments import it from here too).
_sctp_rtt_ms = sctp_rtt_ms


def _inbound_rtp_per_ssrc(pc: Any, report: dict[str, Any]) -> dict[str, Any]:
    """One inbound-rtp entry per received media SSRC, retransmission (RTX) streams left out.

    aiortc gives every SSRC a receiver sees the same stats id, so once the sender
    retransmits (NACK -> RTX, e.g. on a jittery link) the RTX stream's few packets replace
    the media stream's counters and jitter in the report. Rebuilt here from the receiver's
    own (private) per-SSRC statistics; left as reported if those are not there.
    """
    try:
        transceivers = list(pc.getTransceivers())
    except Exception:
        return report
    for transceiver in transceivers:
        receiver = transceiver.receiver
        streams = receiver_streams(receiver)
        rtx = receiver_rtx_ssrcs(receiver)
        shared_id = f"inbound-rtp_{id(receiver)}"
        entry = report.get(shared_id)
        if not isinstance(streams, dict) or not isinstance(rtx, dict) or entry is None:
            continue
        del report[shared_id]
        for ssrc, stream in list(streams.items()):
            if ssrc in rtx:
                continue
            report[f"{shared_id}_{ssrc}"] = dataclasses.replace(
                entry,
                id=f"{shared_id}_{ssrc}",
                ssrc=ssrc,
                packetsReceived=stream.packets_received,
                packetsLost=stream.packets_lost,
                jitter=stream.jitter,
            )
    return report


def _clock_rates(pc: Any) -> dict[str, int]:
    """Negotiated RTP clock per kind (the transceiver's codecs, first = primary codec)."""
    rates: dict[str, int] = {}
    try:
        transceivers = list(pc.getTransceivers())
    except Exception:
        return rates
    for transceiver in transceivers:
        codecs = transceiver_codecs(transceiver)
        kind = getattr(transceiver, "kind", None)
        rate = getattr(codecs[0], "clockRate", None) if codecs else None
        if isinstance(kind, str) and isinstance(rate, int) and kind not in rates:
            rates[kind] = rate
    return rates


# -- frames and files ---------------------------------------------------------------------


def _samples_frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Build the frame column by column with explicit dtypes (no inference: fast, stable)."""
    rows = list(rows)
    try:  # rows from snapshot_to_rows have every key: transpose at C speed
        columns = list(zip(*map(_ROW_GETTER, rows), strict=True)) if rows else []
    except KeyError:
        columns = [tuple(r.get(c) for r in rows) for c in SAMPLE_COLUMNS]
    if not columns:
        columns = [()] * len(SAMPLE_COLUMNS)
    data: dict[str, Any] = {}
    for column, values in zip(SAMPLE_COLUMNS, columns, strict=True):
        if column == "t":
            data[column] = _to_time(pd.Series(values, dtype=object))
        elif column in NUMERIC_COLUMNS:
            data[column] = pd.Series(np.array(values, dtype="float64"))  # None -> NaN
        else:
            data[column] = pd.Series(values, dtype=object)
    frame: pd.DataFrame = pd.DataFrame(data, columns=SAMPLE_COLUMNS)
    return frame


def _normalize_samples(df: pd.DataFrame) -> pd.DataFrame:
    """One dtype contract for memory, CSV and Parquet, so round trips compare equal."""
    out: pd.DataFrame = pd.DataFrame(index=pd.RangeIndex(len(df)))
    for column in SAMPLE_COLUMNS:
        values = df[column] if column in df.columns else pd.Series([None] * len(df))
        values = values.reset_index(drop=True)
        if column == "t":
            out[column] = _to_time(values)
        elif column in NUMERIC_COLUMNS:
            out[column] = pd.to_numeric(values, errors="coerce").astype("float64")
        else:
            out[column] = _to_object(values)
    return out


def _events_frame(events: Iterable[dict[str, Any]]) -> pd.DataFrame:
    events = list(events)
    data = {c: [e.get(c) for e in events] for c in EVENT_COLUMNS}
    df = pd.DataFrame(data, columns=EVENT_COLUMNS)
    out: pd.DataFrame = pd.DataFrame(index=pd.RangeIndex(len(df)))
    out["t"] = _to_time(df["t"])
    for column in ("peer", "remote", "event"):
        out[column] = _to_object(df[column])
    out["value"] = pd.Series(list(df["value"]), dtype=object)
    return out


def _to_time(values: pd.Series) -> pd.Series:
    if len(values) == 0:
        empty: pd.Series = pd.Series([], dtype="datetime64[us, UTC]")
        return empty
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = pd.to_datetime(values, utc=True)
    else:
        parsed = pd.to_datetime(values, utc=True, format="ISO8601")
    result: pd.Series = parsed.astype("datetime64[us, UTC]")
    return result


def _to_object(values: pd.Series) -> pd.Series:
    """Strings as Python ``str`` in an object column, missing as ``None`` (pandas 2 and 3 alike)."""
    obj = values.astype(object)
    result: pd.Series = obj.where(obj.notna(), None)
    return result


def _event_cell(value: Any) -> str:
    """An event ``value`` as CSV text: strings as they are (what ``pd.read_csv`` users
    expect), ``None`` empty, numbers, booleans, lists and dicts as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)


def _event_value(text: Any) -> Any:
    """Inverse of :func:`_event_cell`: JSON numbers, booleans, lists and dicts decoded, any
    other text kept as the string it is (so a string that reads as a number comes back as
    that number: the one ambiguity of plain-text values)."""
    if not isinstance(text, str) or text == "":
        return None
    if text[0] in "[{-0123456789" or text in ("true", "false", "null"):
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def _append_csv_rows(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    """Append rows with the csv module: a DataFrame per poll would cost ~30 ms in the loop.

    The text matches what ``read_samples_csv`` / ``read_events_csv`` parse: ISO timestamps,
    ``repr`` floats (exact round trip), empty cells for ``None``, event values as
    :func:`_event_cell` writes them.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    header = not path.exists() or path.stat().st_size == 0
    with path.open("a", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        if header:
            writer.writerow(columns)
        for row in rows:
            cells = []
            for column in columns:
                value = row.get(column)
                if column == "value":
                    cells.append(_event_cell(value))
                elif value is None:
                    cells.append("")
                elif isinstance(value, datetime):
                    cells.append(value.isoformat())
                elif isinstance(value, float):
                    cells.append("" if math.isnan(value) else repr(value))
                else:
                    cells.append(str(value))
            writer.writerow(cells)


def read_samples_csv(path: str | Path) -> pd.DataFrame:
    """Read ``samples.csv`` (or a spill file) back with the dtypes of ``collector.samples``."""
    options: dict[str, Any] = {}
    if int(pd.__version__.split(".")[0]) < 3:  # pandas 3's default parser is already exact
        options["float_precision"] = "round_trip"
    df = pd.read_csv(
        path,
        dtype={c: object for c in ["t", *STRING_COLUMNS]},
        keep_default_na=False,  # a remote called "NA" stays a string; only empty is missing
        na_values=[""],
        **options,
    )
    return _normalize_samples(df)


def read_events_csv(path: str | Path) -> pd.DataFrame:
    """Read ``events.csv`` back (non-string values decoded) with the dtypes of
    ``collector.events``."""
    df = pd.read_csv(path, dtype=object, keep_default_na=False, na_values=[""])
    return _decode_events(df)


def read_samples_parquet(path: str | Path) -> pd.DataFrame:
    """Read ``samples.parquet`` back with the dtypes of ``collector.samples``."""
    _require_pyarrow()
    return _normalize_samples(pd.read_parquet(path, engine="pyarrow"))


def read_events_parquet(path: str | Path) -> pd.DataFrame:
    """Read ``events.parquet`` back (non-string values decoded) like ``collector.events``."""
    _require_pyarrow()
    return _decode_events(pd.read_parquet(path, engine="pyarrow"))


def _decode_events(df: pd.DataFrame) -> pd.DataFrame:
    out: pd.DataFrame = pd.DataFrame(index=pd.RangeIndex(len(df)))
    out["t"] = _to_time(df["t"])
    for column in ("peer", "remote", "event"):
        out[column] = _to_object(df[column])
    out["value"] = pd.Series([_event_value(v) for v in df["value"]], dtype=object)
    return out


def _require_pyarrow() -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "Parquet export needs pyarrow: pip install pyarrow (or rtclab[parquet])"
        ) from exc
