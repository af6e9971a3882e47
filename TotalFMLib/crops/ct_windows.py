"""The recipe's CT windows as (name, level, width) in HU: the crops' three channels and the
soft-tissue grey of the pictures come from this one table (no heavy imports)."""
from __future__ import annotations

WINDOWS = (("lung", -600, 1500), ("soft_tissue", 40, 400), ("bone", 300, 1500))


def window(name: str) -> tuple[float, float]:
    """(level, width) in HU of the named window."""
    for window_name, level, width in WINDOWS:
        if window_name == name:
            return level, width
    raise KeyError(f"unknown window {name!r}; known: {', '.join(w for w, _, _ in WINDOWS)}")


def window_range(name: str) -> tuple[float, float]:
    """(lowest, highest) HU of the named window: level -/+ width // 2 (the recipe's WL - WW//2)."""
    level, width = window(name)
    return level - width // 2, level + width // 2
