"""Analyses of run logs: scaling slopes, per-category inverse scaling, preset effects, falsehoods."""

from truthscope.analysis.falsehoods import confident_falsehoods
from truthscope.analysis.presets import paired_difference, preset_effects
from truthscope.analysis.runs import Run, find_runs
from truthscope.analysis.scaling import (
    category_scaling,
    contrast_table,
    direction,
    fit_slope,
    scaling_table,
    slope_difference,
)

__all__ = [
    "Run",
    "category_scaling",
    "confident_falsehoods",
    "contrast_table",
    "direction",
    "find_runs",
    "fit_slope",
    "paired_difference",
    "preset_effects",
    "scaling_table",
    "slope_difference",
]
