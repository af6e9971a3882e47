"""What identifies a CT or segmentation input, cheaply, for caches of per-case results:

* a ``Volume``: SHA-256 of its array bytes plus dtype, shape, spacing, origin and direction
  (hardware SHA makes this ~0.2 s for a 512x512x336 CT, against seconds of encoding);
* a file or folder path: its resolved path, size and modification time (of every file in
  a DICOM folder), so an unchanged file is not even read again -- the same rule ``make``
  uses; a file rewritten in place with the same size within the same nanosecond is missed.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from .volume import Volume


def _path_key(path) -> str:
    p = Path(path).expanduser().resolve()
    if p.is_dir():
        parts = []
        for root, _, files in sorted(os.walk(p)):
            for name in sorted(files):
                st = os.stat(os.path.join(root, name))
                parts.append(f"{os.path.relpath(os.path.join(root, name), p)}:{st.st_size}:{st.st_mtime_ns}")
        return f"dir:{p}:" + hashlib.sha256("\n".join(parts).encode()).hexdigest()
    try:
        st = p.stat()
    except OSError:
        return f"missing:{p}"  # loading will raise the proper InputError
    return f"file:{p}:{st.st_size}:{st.st_mtime_ns}"


def _volume_key(vol: Volume) -> str:
    a = np.ascontiguousarray(vol.array)
    h = hashlib.sha256()
    h.update(repr((str(a.dtype), a.shape, tuple(map(float, vol.spacing)), tuple(map(float, vol.origin)),
                   tuple(map(float, vol.direction)))).encode())
    h.update(memoryview(a).cast("B"))
    return "array:" + h.hexdigest()


def input_key(item) -> str:
    """Cache key of a CT or segmentation given as a Volume or a path."""
    if isinstance(item, Volume):
        return _volume_key(item)
    return _path_key(item)


def pair_key(ct, seg) -> str:
    """Key of a (CT, segmentation) pair of inputs."""
    return f"{input_key(ct)}|{input_key(seg)}"
