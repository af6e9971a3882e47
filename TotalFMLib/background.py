"""Run long work off the GUI thread: a worker thread plus a queue the GUI polls.

    job = BackgroundJob(lambda progress, cancel: model.encode_image(ct, seg, progress=progress, cancel=cancel))
    job.start()
    # on a GUI timer:  for fraction, message in job.poll(): ...;  if job.done: use job.result / job.error
    job.cancel()   # the work sees cancel() == True and raises errors.Cancelled

The work must not touch the GUI or the MRML scene; the caller applies the result on its
own thread once ``done`` is true, so a cancelled or failed job changes nothing.
"""
from __future__ import annotations

import queue
import threading
from typing import Any, Callable

from .errors import Cancelled

READY, RUNNING, FINISHED, FAILED, CANCELLED = "ready", "running", "finished", "failed", "cancelled"


class BackgroundJob:
    def __init__(self, work: Callable[[Callable[[float, str], None], Callable[[], bool]], Any],
                 name: str = "TotalFM worker"):
        self._work = work
        self._name = name
        self._events: queue.Queue = queue.Queue()
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self.state = READY
        self.result: Any = None
        self.error: BaseException | None = None

    # ------------------------------------------------------------ caller side
    def start(self) -> "BackgroundJob":
        if self._thread is not None:
            raise RuntimeError("a BackgroundJob runs once")
        self.state = RUNNING
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()
        return self

    def cancel(self) -> None:
        """Ask the work to stop at its next cancel() check."""
        self._cancel.set()

    @property
    def done(self) -> bool:
        """True once the work has returned, failed or stopped (``state`` says which)."""
        return self._thread is not None and not self._thread.is_alive()

    def poll(self) -> list[tuple[float, str]]:
        """Progress reports (fraction, message) since the last poll, oldest first."""
        events = []
        while True:
            try:
                events.append(self._events.get_nowait())
            except queue.Empty:
                return events

    def wait(self, timeout: float | None = None) -> str:
        """Block until the work ends (for scripts and tests); returns ``state``."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.state

    # ------------------------------------------------------------ worker side
    def _progress(self, fraction: float, message: str = "") -> None:
        self._events.put((float(fraction), str(message)))

    def _cancelled(self) -> bool:
        return self._cancel.is_set()

    def _run(self) -> None:
        try:
            result = self._work(self._progress, self._cancelled)
            if self._cancel.is_set():
                raise Cancelled("cancelled")
            self.result = result
            self.state = FINISHED
        except Cancelled:
            self.state = CANCELLED
        except BaseException as e:  # handed to the caller's thread, which reports it
            self.error = e
            self.state = FAILED
