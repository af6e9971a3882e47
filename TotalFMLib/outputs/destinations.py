"""Output files: checked before any work starts, then written all or nothing.

``Destinations`` takes the output paths of one command. ``check()`` refuses, with one line
naming the path, an output that is an existing folder, lies under a file, or lies in a folder
that cannot be written (a probe file is created and removed, so read-only file systems and
permissions are found whatever the user's rights). It creates nothing that stays: a missing
folder is only checked to be creatable.

``write({path: writer})`` runs each ``writer(tmp)`` on a temporary file beside its target;
only when every writer has succeeded are the temporary files renamed over the targets. If any
writer fails, every temporary file is removed and no target is touched; if a rename fails,
the targets already renamed are removed again, so a failure never leaves some outputs of a
run without the others.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Callable

from ..errors import InputError


def _first_existing(folder: Path) -> Path:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _probe(folder: Path) -> str | None:
    """None when a file can be created in ``folder``, else why not."""
    probe = folder / f".totalfm-write-test-{secrets.token_hex(4)}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as e:
        return e.strerror or type(e).__name__
    os.close(fd)
    probe.unlink(missing_ok=True)
    return None


def check_output(path: str | os.PathLike) -> Path:
    """``path`` as a Path if a file can be written there; InputError naming it otherwise."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise InputError(path, "is an existing folder; give a file name for this output")
    if path.exists() and not path.is_file():
        raise InputError(path, "exists and is not a regular file; give another file name for this output")
    folder = path.parent
    existing = _first_existing(folder)
    if not existing.is_dir():
        raise InputError(path, f"cannot be created: {existing} is a file, not a folder")
    why = _probe(existing)
    if why is not None:
        where = "its folder" if existing == folder else f"{existing} (where its folder {folder} would be made)"
        raise InputError(path, f"cannot be written: {where} is not writable ({why})")
    return path


class Destinations:
    """The output files of one run; see the module docstring."""

    def __init__(self, paths):
        self.paths = [Path(p).expanduser() for p in paths if p is not None]
        names = [str(p.resolve()) for p in self.paths]
        for p, name in zip(self.paths, names):
            if names.count(name) > 1:
                raise InputError(p, "is given for two outputs; give each output its own file")

    def check(self) -> "Destinations":
        for p in self.paths:
            check_output(p)
        return self

    def write(self, writers: dict[Path, Callable[[Path], object]]) -> list[Path]:
        """Run every writer on a temporary file, then put them all in place; returns the paths."""
        temps: dict[Path, Path] = {}
        done: list[Path] = []
        try:
            for target, writer in writers.items():
                target = Path(target).expanduser()
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.parent / f".{target.name}.{secrets.token_hex(4)}{target.suffix}"
                temps[target] = tmp
                writer(tmp)
            for target, tmp in temps.items():
                os.replace(tmp, target)
                done.append(target)
        except BaseException:
            for tmp in temps.values():
                tmp.unlink(missing_ok=True)
            for target in done:
                target.unlink(missing_ok=True)
            raise
        return done
