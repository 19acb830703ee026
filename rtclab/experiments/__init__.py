"""rtclab.experiments: repeatable comparisons that return DataFrames and plotly figures."""

from .ice_paths import (
    DEFAULT_SCENARIOS,
    RESULT_COLUMNS,
    IcePathComparison,
    Scenario,
    compare_ice_paths,
    ice_paths_figure,
)

__all__ = [
    "DEFAULT_SCENARIOS",
    "RESULT_COLUMNS",
    "IcePathComparison",
    "Scenario",
    "compare_ice_paths",
    "ice_paths_figure",
]
