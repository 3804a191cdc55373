"""Looking inside models: hook points (`hooks`), attribution, truth neurons and their suppression."""

from truthscope.interp.hooks import (
    ARCHITECTURES,
    Add,
    ArchSpec,
    Dimensions,
    Replace,
    Scale,
    Zero,
    architecture,
    capture,
    dimensions,
    edit,
    hook_names,
    n_layers,
)

__all__ = [
    "ARCHITECTURES",
    "Add",
    "ArchSpec",
    "Dimensions",
    "Replace",
    "Scale",
    "Zero",
    "architecture",
    "capture",
    "dimensions",
    "edit",
    "hook_names",
    "n_layers",
]
