"""Files whole or not at all: written through a temp file in the target's folder, then
os.replace; and the SHA-256 that checks a file arrived whole.

Permissions are those a plain ``open(path, "w")`` gives: a new file gets 0o666 minus the
umask (the temp file is created with mode 0o666 and the system applies the umask, so the
process-wide umask is never read or changed, which would race with other threads); a file
that is replaced keeps its permission bits (not its owner, as any rename).
"""
from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path


def _create_temp(folder: Path, prefix: str, suffix: str) -> Path:
    """A new empty file in ``folder`` with a unique name and the mode ``open()`` would give."""
    for _ in range(100):
        tmp = folder / f"{prefix}{secrets.token_hex(4)}{suffix}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"{folder}: could not create a unique temporary file {prefix}*{suffix}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp"):
    """Yield a temporary path next to ``path``; on success it replaces ``path``.

    On any exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temp(path.parent, f".{path.name}.", suffix)
    try:
        yield tmp
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except FileNotFoundError:
            mode = None
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 4 MB blocks."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def save_torch(obj, path: str | os.PathLike, suffix: str = ".pt") -> Path:
    """``torch.save(obj)`` to ``path`` atomically (no half-written file on any failure)."""
    import torch

    with atomic_path(path, suffix=suffix) as tmp:
        torch.save(obj, tmp)
    return Path(path)
