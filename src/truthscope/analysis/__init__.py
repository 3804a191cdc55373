"""Analyses of run logs: slopes within a family, paired differences between models, per-category
flags (sign-flip tests, Benjamini-Hochberg), the above-chance contrast, preset effects, falsehoods."""

from truthscope.analysis.falsehoods import confident_falsehoods
from truthscope.analysis.presets import paired_difference, preset_effects
from truthscope.analysis.runs import Run, find_runs
from truthscope.analysis.scaling import (
    above_chance,
    benjamini_hochberg,
    category_scaling,
    contrast_table,
    difference_word,
    direction,
    fit_slope,
    scaling_table,
    sign_flip_p,
    slope_difference,
    slope_families,
)

__all__ = [
    "Run",
    "above_chance",
    "benjamini_hochberg",
    "category_scaling",
    "confident_falsehoods",
    "contrast_table",
    "difference_word",
    "direction",
    "find_runs",
    "fit_slope",
    "paired_difference",
    "preset_effects",
    "scaling_table",
    "sign_flip_p",
    "slope_difference",
    "slope_families",
]
