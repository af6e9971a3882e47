"""Uploads from the page: streamed over HTTP into the session's private folder, never by a name
the browser chose: each batch gets a new numbered folder, each file its base name reduced to
safe characters. A batch over the size limit is refused while it streams and removed."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

KINDS = ("ct", "seg", "review")
MAX_FILES = 5000
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class UploadRefused(Exception):
    """One line for the page."""


def safe_name(name: str, index: int) -> str:
    """The file's base name with anything but letters, digits, '.', '_' and '-' replaced;
    names that end up empty or hidden get a numbered one."""
    base = _UNSAFE.sub("_", name.replace("\\", "/").rsplit("/", 1)[-1])
    return base if base.strip("._") and not base.startswith(".") else f"file{index:04d}"


class Uploads:
    """The batches of one session: ``latest[kind]`` is the list of files of the last upload."""

    def __init__(self, folder: Path, max_bytes: int) -> None:
        self.folder = folder / "uploads"
        self.max_bytes = max_bytes
        self.latest: dict[str, list[Path]] = {}
        self._count = 0

    def new_batch(self, kind: str) -> Path:
        if kind not in KINDS:
            raise UploadRefused(f"unknown upload kind {kind!r}")
        self._count += 1
        batch = self.folder / f"{self._count:03d}-{kind}"
        batch.mkdir(parents=True, mode=0o700)
        return batch

    async def receive(self, request, kind: str) -> list[Path]:
        """Read a multipart upload into a new batch folder; the file list, or ``UploadRefused``."""
        batch = self.new_batch(kind)
        files, total = [], 0
        try:
            reader = await request.multipart()
            async for part in reader:
                if part.filename is None:
                    continue
                if len(files) >= MAX_FILES:
                    raise UploadRefused(f"more than {MAX_FILES} files in one upload")
                name = safe_name(part.filename, len(files))
                while (batch / name).exists():
                    name = f"{len(files):04d}_{name}"
                target = batch / name
                with open(target, "wb") as out:
                    while chunk := await part.read_chunk(1 << 20):
                        total += len(chunk)
                        if total > self.max_bytes:
                            raise UploadRefused(f"{part.filename}: the upload is larger than the limit of "
                                                f"{self.max_bytes / 1e6:.0f} MB (totalfm serve --max-upload-mb)")
                        out.write(chunk)
                files.append(target)
            if not files:
                raise UploadRefused("no file in the upload")
        except BaseException:
            shutil.rmtree(batch, ignore_errors=True)
            raise
        self.latest[kind] = files
        return files
