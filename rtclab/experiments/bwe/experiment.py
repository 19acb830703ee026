"""``bwe_test``: RFC 8867 cases x estimators, each a run on a real network, in parallel.

One run = one case with one estimator (:mod:`.run`). Runs go through
:func:`~rtclab.experiments._harness.run_scenarios`: to local processes (spawned, one per
CPU by default), to a Dask cluster (``client=``), or they stay in this loop (``workers=0``,
a single run, or an estimator that plain pickle cannot carry to a process, such as a class
defined in a notebook cell; Dask carries those). Namespace runs always stay here: their
peers are processes already.
"""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from .._harness import ExperimentResult, run_scenarios
from .cases import CASES, BweCase, case_named
from .figure import bwe_figure
from .metrics import FRAME_COLUMNS, METRIC_COLUMNS, STEP_COLUMNS, metrics_table, steps_table
from .run import RunSpec, netns_unsupported, run_emulated, run_netns

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = ["BweTest", "bwe_test", "run_batch"]

Backend = Literal["emulated", "netns"]
DEFAULT_LABEL = "aiortc default"


@dataclass
class BweTest(ExperimentResult):
    """What :func:`bwe_test` returns: :attr:`frame` (per flow per sample), :attr:`metrics`
    (RFC 8868, per flow and ``flow="all"``), :attr:`steps` (per capacity step: how long
    until the target went under a lowered capacity, and until the flows got 90 % of the new
    one; None = never), :attr:`notes` (where rtclab departs from the RFC) and
    :attr:`errors` (runs that failed, by ``(case, estimator)``). :attr:`figure` overlays
    capacity, estimate, target and send rate per flow, a panel per run; :meth:`plot` draws
    some estimators only. Unpacks as ``frame, metrics, steps, figure``."""

    metrics: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=METRIC_COLUMNS))
    steps: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=STEP_COLUMNS))
    notes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    errors: dict[tuple[str, str], str] = field(default_factory=dict)
    run_seconds: dict[tuple[str, str], float] = field(default_factory=dict)

    def _make_figure(self) -> go.Figure:
        return bwe_figure(self.frame)

    def plot(self, estimator: str | Sequence[str] | None = None) -> go.Figure:
        """The figure for some estimators only (by label)."""
        chosen = [estimator] if isinstance(estimator, str) else estimator
        return bwe_figure(self.frame, estimators=chosen)

    def __iter__(self) -> Iterator[Any]:
        yield self.frame
        yield self.metrics
        yield self.steps
        yield self.figure


def _label(estimator: Any) -> str:
    if estimator is None:
        return DEFAULT_LABEL
    from ...cc.estimator import estimator_name, load_estimator

    return estimator_name(load_estimator(estimator) if isinstance(estimator, str) else estimator)


def _portable(estimator: Any) -> bool:
    """Can plain pickle carry it to a spawned process (an importable class, a string)?"""
    if estimator is None or isinstance(estimator, str):
        return True
    if getattr(estimator, "__module__", None) == "__main__":
        return False
    try:
        pickle.dumps(estimator)
    except Exception:
        return False
    return True


def run_batch(specs: list[RunSpec]) -> list[dict[str, Any]]:
    """Emulated runs in a fresh event loop, one after the other (what a worker process or a
    Dask task calls): per run ``{"label", "case", "rows", "error", "seconds"}``, plain data."""
    return [asyncio.run(_run_safely(spec)) for spec in specs]


def _postfix(result: dict[str, Any]) -> str:
    return f"{result['case']} {result['label']}: {'failed' if result['error'] else 'ok'}"


async def _run_safely(spec: RunSpec, net: Any = None) -> dict[str, Any]:
    began = time.monotonic()
    out: dict[str, Any] = {"label": spec.label, "case": spec.case.key, "rows": [], "error": None}
    try:
        if net is None:
            frame = await run_emulated(spec)
        else:
            frame = await run_netns(spec, net)
        out["rows"] = frame.to_dict("records")
        if frame.empty:
            out["error"] = "no samples: the flows never connected"
    except Exception as exc:  # a broken run is a result, not a lost comparison
        out["error"] = f"{type(exc).__name__}: {exc}"
    out["seconds"] = time.monotonic() - began
    return out


def _cases(case: Any) -> list[BweCase]:
    if case == "all":
        return list(CASES.values())
    if isinstance(case, (str, BweCase)):
        return [case_named(case)]
    return [case_named(c) for c in case]


async def bwe_test(
    case: str | BweCase | Sequence[str | BweCase] = "5.1",
    estimator: Any = None,
    backend: Backend = "emulated",
    time_scale: float = 1.0,
    client: Any = None,
    *,
    workers: int | None = None,
    interval: float = 0.5,
    width: int = 640,
    height: int = 480,
    fps: float = 30.0,
    queue_ms: float | None = None,
    seed: int = 0,
    progress: bool = True,
) -> BweTest:
    """Run RFC 8867 section 5 ``case`` (``"5.1"`` ... ``"5.8"``, ``"all"``, a
    :class:`BweCase`, or a list) with each ``estimator`` and measure it (RFC 8868).

    ``estimator``: None (aiortc's own), a class or factory (``rtclab.cc.LossBasedAimd``),
    a ``"module:Class"`` string, or a list of these: one run per case per estimator, on
    the same case. ``time_scale`` shortens every time of the case (0.25: 100 s in 25 s);
    delays, queues and capacities stay. ``queue_ms`` overrides the case's queue (5.6 asks
    for 300 and 1000 ms). The sender sends ``width`` x ``height`` @ ``fps`` test pattern
    (VP8); ``interval`` is the sampling period, so the resolution of every time measured.

    Where rtclab cannot follow the RFC the result's ``notes`` say so, per case: aiortc's
    sender clamps its target to 250-1500 kbps (a capacity above 1.5 Mbps per flow is never
    filled: ``steps.reachable_90``), TCP is a Reno-like model in the emulated network, a
    paused flow sends black frames.

    ``backend="netns"`` (root) runs the peers as processes between namespace hosts, the
    bottleneck through NFQUEUE; cases it cannot build yet raise a ``ValueError`` saying
    what is missing. Runs go to ``workers`` local processes (default: one per CPU; 0, or a
    single run: this loop) or to a Dask ``client``, with a progress bar. Parallel runs
    share the CPUs: on a small machine each encoder gets less, which shows in what the
    senders manage to send.
    """
    cases = [c.scaled(time_scale) for c in _cases(case)]
    if queue_ms is not None:
        from dataclasses import replace

        cases = [replace(c, queue_ms=float(queue_ms)) for c in cases]
    estimators = list(estimator) if isinstance(estimator, (list, tuple)) else [estimator]
    labels = [_label(e) for e in estimators]
    if len(set(labels)) != len(labels):
        raise ValueError(f"two estimators share a label: {labels}; give them a name attribute")
    if backend not in ("emulated", "netns"):
        raise ValueError("backend must be 'emulated' or 'netns'")
    if backend == "netns":
        from ...net.netns import require_netns

        for c in cases:
            missing = netns_unsupported(c)
            if missing:
                raise ValueError(f"backend='netns' cannot run case {c.key} yet: "
                                 f"{'; '.join(missing)}; use backend='emulated'")  # fmt: skip
        require_netns()
    specs = [
        RunSpec(c, e, lab, interval=interval, video=(width, height, fps), seed=seed)
        for c in cases
        for e, lab in zip(estimators, labels, strict=True)
    ]
    began = time.monotonic()

    async def here(items: list[RunSpec], done: Callable[[dict[str, Any]], None]) -> list[Any]:
        results = []
        async with contextlib.AsyncExitStack() as stack:
            net = None
            if backend == "netns":
                from ...net.netns import NetnsNetwork

                net = stack.enter_context(NetnsNetwork())
            for spec in items:
                results.append(await _run_safely(spec, net))
                done(results[-1])
        return results

    portable = all(_portable(e) for e in estimators)
    results = await run_scenarios(
        specs, here=here, batch=run_batch, client=client if backend == "emulated" else None,
        workers=workers if backend == "emulated" and portable else 0,
        desc="bwe test", unit="run", postfix=_postfix, progress=progress,
    )  # fmt: skip
    return _result(specs, results, time.monotonic() - began)


def _result(specs: list[RunSpec], results: list[dict[str, Any]], elapsed: float) -> BweTest:
    by_key = {(r["case"], r["label"]): r for r in results}
    frames, metrics, steps = [], [], []
    errors: dict[tuple[str, str], str] = {}
    seconds: dict[tuple[str, str], float] = {}
    for spec in specs:  # in the order asked, whatever order they finished in
        key = (spec.case.key, spec.label)
        result = by_key.get(key, {"rows": [], "error": "no result", "seconds": 0.0})
        seconds[key] = float(result.get("seconds", 0.0))
        if result["error"]:
            errors[key] = str(result["error"])
        frame = pd.DataFrame(result["rows"], columns=FRAME_COLUMNS)
        if frame.empty:
            continue
        frames.append(frame)
        metrics.append(metrics_table(frame, spec.case, spec.label))
        steps.append(steps_table(frame, spec.case, spec.label))
    return BweTest(
        pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=FRAME_COLUMNS),
        metrics=pd.concat(metrics, ignore_index=True)
        if metrics
        else pd.DataFrame(columns=METRIC_COLUMNS),
        steps=pd.concat(steps, ignore_index=True) if steps else pd.DataFrame(columns=STEP_COLUMNS),
        notes={s.case.key: s.case.notes for s in specs},
        errors=errors,
        run_seconds=seconds,
        elapsed_s=elapsed,
    )
