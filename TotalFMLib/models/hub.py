"""The released TotalFM checkpoint on Hugging Face and the local folder that caches it."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable, Union

OFFICIAL_REPO = "jichi-labo/TotalFM"
OFFICIAL_FILE = "totalfm_en_checkpoint_best_loss.pt"
OFFICIAL_URL = f"https://huggingface.co/{OFFICIAL_REPO}"

# What clear_cache() may delete inside the cache folder: model files, partial downloads and the
# metadata folder huggingface_hub writes next to a local_dir download. Nothing else, so pointing
# TOTALFM_HOME at a folder that holds other files never loses them.
_MODEL_SUFFIXES = (".pt", ".pth", ".ckpt", ".safetensors", ".incomplete", ".lock")
_HF_METADATA_DIR = ".cache"
_CHUNK_BYTES = 1 << 20
_TIMEOUT_S = 60  # seconds without an answer or a byte before a download gives up


def model_cache_dir() -> Path:
    """Folder for downloaded weights: $TOTALFM_HOME, else the user cache dir + /models."""
    env = os.environ.get("TOTALFM_HOME", "").strip()
    if env:
        return Path(os.path.expandvars(env)).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("totalfm")) / "models"


def _folder(cache_dir: str | os.PathLike | None) -> Path:
    """``cache_dir`` as a Path, or the default cache folder when it is None."""
    return Path(cache_dir) if cache_dir is not None else model_cache_dir()


def _offline() -> bool:
    """huggingface_hub's offline switch (HF_HUB_OFFLINE), False without the package."""
    try:
        from huggingface_hub import constants
    except ImportError:
        return False
    check = getattr(constants, "is_offline_mode", None)
    return bool(check() if callable(check) else getattr(constants, "HF_HUB_OFFLINE", False))


def download_failure_reason(err: BaseException) -> str:
    """One line saying why a Hugging Face download failed (offline mode, network, HTTP)."""
    if _offline():
        return "Hugging Face offline mode is on (HF_HUB_OFFLINE)"
    return error_line(err)


def error_line(err: BaseException) -> str:
    """The first sentence of an exception's message on one line (at most 200 characters)."""
    text = " ".join(str(err).split())
    line = text.split(". ")[0] if text else type(err).__name__
    return line[:200]


def official_cached(cache_dir: str | os.PathLike | None = None) -> bool:
    """True when the released checkpoint is already in the cache folder (non-empty file)."""
    target = _folder(cache_dir) / OFFICIAL_FILE
    return target.is_file() and target.stat().st_size > 0


ProgressArg = Union[bool, Callable[[float, str], None], None]


def official_checkpoint(cache_dir: str | os.PathLike | None = None, progress: ProgressArg = True,
                        cancel: Callable[[], bool] | None = None) -> Path:
    """Path of the released checkpoint, downloading it from Hugging Face on first use.

    ``progress``: True shows a console bar, False/None nothing, a callable is called as
    ``progress(fraction, message)`` while the file arrives. ``cancel``: returns True to stop
    (raises ``Cancelled``). The file is streamed into a temp file in the cache folder and
    renamed when complete, so a broken download leaves nothing behind. The address is
    ``$HF_ENDPOINT`` (default https://huggingface.co) + ``/<repo>/resolve/main/<file>``; a
    token from ``huggingface_hub`` (HF_TOKEN, ``hf auth login``) is sent to that host only.
    Raises ModelError with one line of advice when the file cannot be fetched.
    """
    from ..errors import Cancelled, ModelError

    folder = _folder(cache_dir)
    target = folder / OFFICIAL_FILE
    if official_cached(folder):
        return target

    def failure(reason: str) -> ModelError:
        return ModelError(
            f"could not download {OFFICIAL_FILE} from Hugging Face {OFFICIAL_REPO}: {reason}; "
            "this machine seems offline or cannot reach huggingface.co. "
            f"The released weights are for research purposes only; download the file on a "
            f"connected machine ({OFFICIAL_URL}) and place the file at {target} "
            "or set TOTALFM_HOME to the folder that holds it."
        )

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ModelError(f"{folder}: cannot create the model cache folder ({e.strerror or e}); "
                         "set TOTALFM_HOME to a writable folder") from e
    try:
        from huggingface_hub import hf_hub_url
    except ImportError as e:
        raise failure("the huggingface_hub package is not installed") from e
    if _offline():
        raise failure("Hugging Face offline mode is on (HF_HUB_OFFLINE)")
    endpoint = os.environ.get("HF_ENDPOINT", "").strip().rstrip("/") or None
    url = hf_hub_url(OFFICIAL_REPO, OFFICIAL_FILE, endpoint=endpoint)
    reporter = _Progress(progress, OFFICIAL_FILE)
    try:
        _stream_to_file(url, target, reporter, cancel, _token())
    except Cancelled:
        raise
    except Exception as e:  # network, HTTP, disk: all end the same way for the user
        raise failure(download_failure_reason(e)) from e
    finally:
        reporter.close()
    return target


def _token() -> str | None:
    """The user's Hugging Face token, if any (never fails: no token is fine for a public file)."""
    try:
        from huggingface_hub import get_token

        return get_token()
    except Exception:
        return None


class _Progress:
    """Byte counts -> ``progress(fraction, message)`` calls (about every 0.5 %) or a console bar."""

    def __init__(self, progress: ProgressArg, name: str):
        self.callback = progress if callable(progress) else None
        self.console = progress is True
        self.name = name
        self.bar = None
        self.last = -1.0

    def start(self) -> None:
        if self.callback:
            self.callback(0.0, f"Downloading {self.name} from Hugging Face")

    def __call__(self, done: int, total: int | None) -> None:
        if self.console:
            if self.bar is None:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=total, unit="B", unit_scale=True, desc=self.name)
            self.bar.update(done - self.bar.n)
        if self.callback:
            fraction = min(done / total, 1.0) if total else 0.0
            if fraction - self.last >= 0.005 or fraction == 1.0 or not total:
                self.last = fraction
                size = f"{done / 1e6:.0f} of {total / 1e6:.0f} MB" if total else f"{done / 1e6:.0f} MB"
                self.callback(fraction, f"Downloading {self.name}: {size}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _stream_to_file(url: str, target: Path, report: _Progress, cancel, token: str | None) -> None:
    """GET ``url`` (redirects followed) into ``target`` atomically, checking the announced size."""
    import urllib.request

    from ..atomic import atomic_path
    from ..errors import Cancelled

    request = urllib.request.Request(url, headers={"User-Agent": "TotalFMLib"})
    if token:  # an unredirected header: the signed CDN address the Hub redirects to gets none
        request.add_unredirected_header("Authorization", f"Bearer {token}")
    report.start()
    with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        done = 0
        with atomic_path(target, suffix=".incomplete") as tmp, open(tmp, "wb") as f:
            while True:
                if cancel is not None and cancel():
                    raise Cancelled("download cancelled")
                chunk = response.read(_CHUNK_BYTES)
                if not chunk:
                    break
                f.write(chunk)
                done += len(chunk)
                report(done, total)
            if total is not None and done != total:
                raise OSError(f"the connection closed after {done} of {total} bytes")
            if done == 0:
                raise OSError("the server sent an empty file")


def _cache_entries(folder: Path) -> list[Path]:
    """The entries of the cache folder that belong to us (see _MODEL_SUFFIXES)."""
    if not folder.is_dir():
        return []
    found = []
    for entry in sorted(folder.iterdir()):
        if entry.name == _HF_METADATA_DIR and entry.is_dir() and not entry.is_symlink():
            if (entry / "huggingface").is_dir():
                found.append(entry)
        elif entry.name.endswith(_MODEL_SUFFIXES) and (entry.is_file() or entry.is_symlink()):
            found.append(entry)
    return found


def _size(path: Path) -> int:
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() or p.is_symlink())


def cache_size(cache_dir: str | os.PathLike | None = None) -> int:
    """Bytes used by downloaded model files in the cache folder."""
    folder = _folder(cache_dir)
    return sum(_size(p) for p in _cache_entries(folder))


def clear_cache(cache_dir: str | os.PathLike | None = None) -> int:
    """Delete downloaded model files (and partial downloads) from the cache folder.

    Other files in the folder are left alone. Returns the number of bytes freed.
    """
    folder = _folder(cache_dir)
    freed = 0
    for entry in _cache_entries(folder):
        freed += _size(entry)
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    return freed
