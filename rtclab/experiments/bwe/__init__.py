"""Congestion control against RFC 8867's test cases: :func:`bwe_test` runs a case with
one or more bandwidth estimators on a real network and measures them as RFC 8868 asks.

Pure parts: :mod:`.cases` (the case table), :mod:`.metrics` (utilization, queue delay,
loss, step times, Jain's fairness), :mod:`.traffic` (short TCP-like transfers); I/O in
:mod:`.run` (one run) and :mod:`.experiment` (runs in parallel); :mod:`.figure` plots.
"""

from .cases import CASES, BweCase, MediaFlow, ShortTcpSpec, case_named
from .experiment import BweTest, bwe_test
from .figure import bwe_figure
from .metrics import FRAME_COLUMNS, METRIC_COLUMNS, STEP_COLUMNS, jain_index

__all__ = [
    "CASES",
    "FRAME_COLUMNS",
    "METRIC_COLUMNS",
    "STEP_COLUMNS",
    "BweCase",
    "BweTest",
    "MediaFlow",
    "ShortTcpSpec",
    "bwe_figure",
    "bwe_test",
    "case_named",
    "jain_index",
]
