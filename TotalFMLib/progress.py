"""Progress callbacks: ``progress(fraction, message)`` with fraction in [0, 1]."""
from __future__ import annotations

from typing import Callable, Optional

Progress = Callable[[float, str], None]


def sub_progress(progress: Optional[Progress], lo: float, hi: float) -> Optional[Progress]:
    """A callback whose [0, 1] maps onto [lo, hi] of ``progress`` (None stays None)."""
    if progress is None:
        return None
    return lambda fraction, message: progress(lo + (hi - lo) * fraction, message)
