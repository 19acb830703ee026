"""The test cases of RFC 8867 section 5 as data: capacity schedules, flows, delays, queues.

Pure: a :class:`BweCase` says what the network does and when each flow runs; the runner
(:mod:`.run`) builds it on a backend. Times are seconds from the case's start; capacities
kbps. :meth:`BweCase.scaled` shortens every time by ``time_scale`` (a 100 s case in 25 s
for a class) and leaves delays, queue sizes and capacities alone: the physics stays, only
the story runs faster.

The numbers are RFC 8867's (the reference capacities times its "path capacity ratio"
tables), and agree case by case with an independent implementation of the same cases, the
ns-3 ``rmcat-wired`` test suite (schedules, flow starts, per-flow delays of 5.5, 50 ms
propagation, 300 ms queues, 10 short-TCP sources with 2 on). Where rtclab cannot follow a
case exactly it says so in :attr:`BweCase.notes`, and the result carries the notes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from itertools import pairwise
from typing import Literal

__all__ = [
    "AIORTC_MAX_KBPS",
    "AIORTC_MIN_KBPS",
    "CASES",
    "BweCase",
    "MediaFlow",
    "ShortTcpSpec",
    "case_named",
]

#: aiortc's VP8/H.264 sender clamps its target to this range whatever the REMB says.
AIORTC_MIN_KBPS = 250.0
AIORTC_MAX_KBPS = 1500.0

_CLAMP_NOTE = (
    "aiortc clamps the sender's target to 250-1500 kbps: a capacity above 1.5 Mbps per "
    "flow cannot be filled, so time to 90 % of it is None when out of reach"
)


@dataclass(frozen=True)
class MediaFlow:
    """One video flow: its sender, its start and end (s), its one-way propagation delay, the
    direction it crosses the bottleneck and when it pauses (``(t_pause, t_resume)``)."""

    name: str
    start_s: float = 0.0
    end_s: float | None = None  # None: to the end of the case
    delay_ms: float = 50.0
    direction: Literal["forward", "backward"] = "forward"
    pauses: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True)
class ShortTcpSpec:
    """Short TCP-like transfers (RFC 8867 5.7): ``sources`` sources, ``initially_on`` of
    them start with a transfer; each transfer is a file of ``min_kb``-``max_kb`` kB, the
    gap before the next exponential with mean ``mean_off_s`` (RFC 8868 section 6.1)."""

    sources: int = 10
    initially_on: int = 2
    min_kb: float = 30.0
    max_kb: float = 50.0
    mean_off_s: float = 10.0


@dataclass(frozen=True)
class BweCase:
    """One RFC 8867 test case: the bottleneck's capacity over time (``schedule``:
    ``((t_s, kbps), ...)``), the reverse path's (``backward``, None: not a bottleneck), the
    queue (tail drop, in ms of waiting), the flows and the competing traffic."""

    key: str  # the RFC 8867 section, "5.1" ... "5.8"
    title: str
    duration_s: float
    schedule: tuple[tuple[float, float], ...]
    flows: tuple[MediaFlow, ...]
    queue_ms: float = 300.0
    backward: tuple[tuple[float, float], ...] | None = None
    long_tcp: tuple[float, float] | None = None  # (start_s, end_s) of one greedy flow
    short_tcp: ShortTcpSpec | None = None
    notes: tuple[str, ...] = field(default=(_CLAMP_NOTE,))
    time_scale: float = 1.0

    def scaled(self, time_scale: float) -> BweCase:
        """Every time of the schedule and the flows times ``time_scale`` (0 < scale <= 1
        shortens the case). The short transfers' idle gaps stay: shorter gaps would load
        the link more, not tell the same story faster."""
        if not time_scale > 0:
            raise ValueError("time_scale must be > 0")
        s = float(time_scale)

        def times(steps: tuple[tuple[float, float], ...]) -> tuple[tuple[float, float], ...]:
            return tuple((t * s, kbps) for t, kbps in steps)

        flows = tuple(
            replace(
                f,
                start_s=f.start_s * s,
                end_s=None if f.end_s is None else f.end_s * s,
                pauses=tuple((a * s, b * s) for a, b in f.pauses),
            )
            for f in self.flows
        )
        return replace(
            self,
            duration_s=self.duration_s * s,
            schedule=times(self.schedule),
            backward=None if self.backward is None else times(self.backward),
            flows=flows,
            long_tcp=None
            if self.long_tcp is None
            else (self.long_tcp[0] * s, self.long_tcp[1] * s),
            time_scale=self.time_scale * s,
        )

    def capacity_at(self, t: float, direction: str = "forward") -> float:
        """The bottleneck capacity (kbps) in force at ``t`` (s)."""
        steps = self.schedule if direction == "forward" else self.backward
        if not steps:
            return float("nan")
        rate = steps[0][1]
        for start, kbps in steps:
            if start <= t:
                rate = kbps
        return rate

    def steps(self, direction: str = "forward") -> list[tuple[float, float, float]]:
        """Each capacity change after t=0 as ``(t_s, from_kbps, to_kbps)``."""
        steps = self.schedule if direction == "forward" else (self.backward or ())
        return [(b[0], a[1], b[1]) for a, b in pairwise(steps) if b[0] > 0]

    def flow(self, name: str) -> MediaFlow:
        for f in self.flows:
            if f.name == name:
                return f
        raise KeyError(name)


def _ratio(
    reference_kbps: float, table: tuple[tuple[float, float], ...]
) -> tuple[tuple[float, float], ...]:
    """RFC 8867 gives capacities as ratios of a reference capacity."""
    return tuple((t, reference_kbps * r) for t, r in table)


CASES: dict[str, BweCase] = {
    case.key: case
    for case in (
        BweCase(
            "5.1", "Variable available capacity with a single flow", 100.0,
            _ratio(1000.0, ((0, 1.0), (40, 2.5), (60, 0.6), (80, 1.0))),
            (MediaFlow("flow1"),),
        ),
        BweCase(
            "5.2", "Variable available capacity with multiple flows", 125.0,
            _ratio(2000.0, ((0, 2.0), (25, 1.0), (50, 1.75), (75, 0.5), (100, 1.0))),
            (MediaFlow("flow1"), MediaFlow("flow2")),
        ),
        BweCase(
            "5.3", "Congested feedback link with bi-directional media flows", 100.0,
            _ratio(1000.0, ((0, 2.0), (20, 1.0), (40, 0.5), (60, 2.0))),
            (MediaFlow("forward"), MediaFlow("backward", direction="backward")),
            backward=_ratio(1000.0, ((0, 2.0), (35, 0.8), (70, 2.0))),
            notes=(
                _CLAMP_NOTE,
                "the two directions are two calls (a peer pair each way): each one's RTCP "
                "crosses the other's bottleneck, as one bidirectional call's would",
            ),
        ),
        BweCase(
            "5.4", "Competing media flows with the same congestion control", 120.0,
            ((0.0, 3500.0),),
            (MediaFlow("flow1"), MediaFlow("flow2", start_s=20), MediaFlow("flow3", start_s=40)),
        ),
        BweCase(
            "5.5", "Round-trip time fairness", 300.0,
            ((0.0, 4000.0),),
            tuple(
                MediaFlow(f"flow{i + 1}", start_s=10.0 * i, delay_ms=d)
                for i, d in enumerate((10.0, 25.0, 50.0, 100.0, 150.0))
            ),
        ),
        BweCase(
            "5.6", "Media flow competing with a long TCP flow", 120.0,
            ((0.0, 2000.0),),
            (MediaFlow("flow1", start_s=5.0),),
            long_tcp=(0.0, 120.0),
            notes=(
                _CLAMP_NOTE,
                "emulated: the TCP flow is rtclab's AIMD (Reno-like) model sharing the queue; "
                "netns: a real TCP bulk transfer (the kernel's CUBIC) through the same queue",
                "RFC 8867 also asks for a 1000 ms queue: bwe_test(..., queue_ms=1000)",
            ),
        ),
        BweCase(
            "5.7", "Media flows competing with short TCP flows", 300.0,
            ((0.0, 2000.0),),
            (MediaFlow("flow1", start_s=5.0), MediaFlow("flow2", start_s=5.0)),
            short_tcp=ShortTcpSpec(),
            notes=(
                _CLAMP_NOTE,
                "emulated: each short transfer is rtclab's AIMD (Reno-like) model with a "
                "byte budget",
            ),
        ),
        BweCase(
            "5.8", "Media pause and resume", 120.0,
            ((0.0, 3500.0),),
            (MediaFlow("flow1"), MediaFlow("flow2", pauses=((40.0, 60.0),)), MediaFlow("flow3")),
            notes=(
                _CLAMP_NOTE,
                "a paused flow sends black frames (a few kbps), as a browser's disabled "
                "track does: aiortc cannot stop an RTP stream without renegotiating",
            ),
        ),
    )
}  # fmt: skip


def case_named(case: str | BweCase) -> BweCase:
    """A case by its section number (``"5.1"``), or the case itself."""
    if isinstance(case, BweCase):
        return case
    key = str(case).removeprefix("rfc8867-").removeprefix("RFC 8867 ")
    if key not in CASES:
        raise ValueError(f"unknown case {case!r}; choose from {', '.join(CASES)}")
    return CASES[key]
