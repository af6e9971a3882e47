"""Progress callbacks: ``progress(fraction, message)`` with fraction in [0, 1], and the console
bar that command-line tools drive with them."""
from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Callable, Optional

Progress = Callable[[float, str], None]


def sub_progress(progress: Optional[Progress], lo: float, hi: float) -> Optional[Progress]:
    """A callback whose [0, 1] maps onto [lo, hi] of ``progress`` (None stays None)."""
    if progress is None:
        return None
    return lambda fraction, message: progress(lo + (hi - lo) * fraction, message)


@contextmanager
def progress_bar(desc: str, enabled: bool = True):
    """A tqdm bar on stderr driven by ``progress(fraction, message)`` callbacks (None when not
    ``enabled``)."""
    if not enabled:
        yield None
        return
    from tqdm import tqdm

    with tqdm(total=100, desc=desc, unit="%", bar_format="{l_bar}{bar}| {elapsed}<{remaining} {postfix}",
              file=sys.stderr, mininterval=0.5) as bar:
        def update(fraction: float, message: str = "") -> None:
            bar.n = round(100 * min(max(fraction, 0.0), 1.0))
            bar.set_postfix_str(message[:40], refresh=False)
            bar.refresh()

        yield update
        update(1.0, "done")
