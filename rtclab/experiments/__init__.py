"""rtclab.experiments: repeatable comparisons that return DataFrames and plotly figures."""

from .binding_timeouts import BindingTimeouts, binding_timeouts
from .bwe import BweCase, BweTest, bwe_figure, bwe_test
from .ice_paths import (
    DEFAULT_SCENARIOS,
    RESULT_COLUMNS,
    IcePathComparison,
    Scenario,
    compare_ice_paths,
    ice_paths_figure,
)
from .impairment import ImpairmentSweep, impairment_figure, impairment_sweep
from .load import LoadTest, load_test
from .nat_matrix import NatMatrix, NatScenario, nat_matrix, nat_matrix_figure

__all__ = [
    "DEFAULT_SCENARIOS",
    "RESULT_COLUMNS",
    "BindingTimeouts",
    "BweCase",
    "BweTest",
    "IcePathComparison",
    "ImpairmentSweep",
    "LoadTest",
    "NatMatrix",
    "NatScenario",
    "Scenario",
    "binding_timeouts",
    "bwe_figure",
    "bwe_test",
    "compare_ice_paths",
    "ice_paths_figure",
    "impairment_figure",
    "impairment_sweep",
    "load_test",
    "nat_matrix",
    "nat_matrix_figure",
]
