"""Exceptions that reach users. Each one names the file (or model) and the problem."""
from __future__ import annotations

import os


class TotalFMError(Exception):
    """Base class of every error this library raises on purpose."""


class InputError(TotalFMError, ValueError):
    """Bad user input: a CT, a segmentation, an organ or finding name.

    The message always reads ``"<path>: <problem>"`` so a CLI or a Slicer dialog can
    show it as one line.
    """

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)

    def __reduce__(self):  # crosses process boundaries (worker pools) with its message intact
        return type(self), (self.path, self.problem)


class ModelError(TotalFMError, RuntimeError):
    """A checkpoint that cannot be loaded, or a download that cannot be made."""


class Cancelled(TotalFMError):
    """Raised inside long work when the caller's cancel flag is set."""


class PacsError(TotalFMError, ConnectionError):
    """A PACS that cannot be reached, does not answer in time, or refuses a request or an
    object. The message names the PACS (address and AE title or URL, never credentials),
    what failed and what was sent or received before it."""
