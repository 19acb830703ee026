"""Frames and files of the stats: dict rows -> typed DataFrames, CSV/Parquet in and out.

One dtype contract for memory, CSV and Parquet (``t`` UTC, numbers float64, text as
``str`` or ``None``), so a round trip compares equal and plain ``pd.read_csv`` gets text
columns as text.
"""

from __future__ import annotations

import csv
import json
import math
import operator
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..qoe.frames import FRAME_COLUMNS, FRAME_STRING_COLUMNS, FRAME_TIME_COLUMNS
from .convert import EVENT_COLUMNS, NUMERIC_COLUMNS, SAMPLE_COLUMNS, STRING_COLUMNS

__all__ = [
    "append_csv_rows",
    "event_cell",
    "events_frame",
    "frames_frame",
    "read_events_csv",
    "read_events_parquet",
    "read_frames_csv",
    "read_frames_parquet",
    "read_samples_csv",
    "read_samples_parquet",
    "require_pyarrow",
    "samples_frame",
]

_ROW_GETTER = operator.itemgetter(*SAMPLE_COLUMNS)


def samples_frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
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


def frames_frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """The ``frames`` table (``FRAME_COLUMNS``): times UTC, names text, the rest float64."""
    rows = list(rows)
    return _normalize_frames(pd.DataFrame({c: [r.get(c) for r in rows] for c in FRAME_COLUMNS}))


def _normalize_frames(df: pd.DataFrame) -> pd.DataFrame:
    out: pd.DataFrame = pd.DataFrame(index=pd.RangeIndex(len(df)))
    for column in FRAME_COLUMNS:
        values = df[column] if column in df.columns else pd.Series([None] * len(df))
        values = values.reset_index(drop=True)
        if column in FRAME_TIME_COLUMNS:
            out[column] = _to_time(values)
        elif column in FRAME_STRING_COLUMNS:
            out[column] = _to_object(values)
        else:
            out[column] = pd.to_numeric(values, errors="coerce").astype("float64")
    return out


def read_frames_csv(path: str | Path) -> pd.DataFrame:
    """Read ``frames.csv`` (or a frames spill file) back with the dtypes of ``lab.frames``."""
    df = pd.read_csv(
        path,
        dtype={c: object for c in [*FRAME_TIME_COLUMNS, *FRAME_STRING_COLUMNS]},
        keep_default_na=False,
        na_values=[""],
    )
    return _normalize_frames(df)


def read_frames_parquet(path: str | Path) -> pd.DataFrame:
    """Read ``frames.parquet`` back with the dtypes of ``lab.frames``."""
    require_pyarrow()
    return _normalize_frames(pd.read_parquet(path, engine="pyarrow"))


def events_frame(events: Iterable[dict[str, Any]]) -> pd.DataFrame:
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


def event_cell(value: Any) -> str:
    """An event ``value`` as CSV text: strings as they are (what ``pd.read_csv`` users
    expect), ``None`` empty, numbers, booleans, lists and dicts as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)


def _event_value(text: Any) -> Any:
    """Inverse of :func:`event_cell`: JSON numbers, booleans, lists and dicts decoded, any
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


def append_csv_rows(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    """Append rows with the csv module: a DataFrame per poll would cost ~30 ms in the loop.

    The text matches what ``read_samples_csv`` / ``read_events_csv`` parse: ISO timestamps,
    ``repr`` floats (exact round trip), empty cells for ``None``, event values as
    :func:`event_cell` writes them.
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
                    cells.append(event_cell(value))
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
    require_pyarrow()
    return _normalize_samples(pd.read_parquet(path, engine="pyarrow"))


def read_events_parquet(path: str | Path) -> pd.DataFrame:
    """Read ``events.parquet`` back (non-string values decoded) like ``collector.events``."""
    require_pyarrow()
    return _decode_events(pd.read_parquet(path, engine="pyarrow"))


def _decode_events(df: pd.DataFrame) -> pd.DataFrame:
    out: pd.DataFrame = pd.DataFrame(index=pd.RangeIndex(len(df)))
    out["t"] = _to_time(df["t"])
    for column in ("peer", "remote", "event"):
        out[column] = _to_object(df[column])
    out["value"] = pd.Series([_event_value(v) for v in df["value"]], dtype=object)
    return out


def require_pyarrow() -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "Parquet export needs pyarrow: pip install pyarrow (or rtclab[parquet])"
        ) from exc
