"""The released TotalFM checkpoint on Hugging Face and the local folder that caches it."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

OFFICIAL_REPO = "jichi-labo/TotalFM"
OFFICIAL_FILE = "totalfm_en_checkpoint_best_loss.pt"
OFFICIAL_URL = f"https://huggingface.co/{OFFICIAL_REPO}"

# What clear_cache() may delete inside the cache folder: model files, partial downloads and the
# metadata folder huggingface_hub writes next to a local_dir download. Nothing else, so pointing
# TOTALFM_HOME at a folder that holds other files never loses them.
_MODEL_SUFFIXES = (".pt", ".pth", ".ckpt", ".safetensors", ".incomplete", ".lock")
_HF_METADATA_DIR = ".cache"


def model_cache_dir() -> Path:
    """Folder for downloaded weights: $TOTALFM_HOME, else the user cache dir + /models."""
    env = os.environ.get("TOTALFM_HOME", "").strip()
    if env:
        return Path(os.path.expandvars(env)).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("totalfm")) / "models"


def download_failure_reason(err: BaseException) -> str:
    """One line saying why a Hugging Face download failed (offline mode, network, HTTP)."""
    try:
        from huggingface_hub import constants

        if constants.is_offline_mode():
            return "Hugging Face offline mode is on (HF_HUB_OFFLINE)"
    except ImportError:
        pass
    return error_line(err)


def error_line(err: BaseException) -> str:
    """The first sentence of an exception's message on one line (at most 200 characters)."""
    text = " ".join(str(err).split())
    line = text.split(". ")[0] if text else type(err).__name__
    return line[:200]


def official_checkpoint(cache_dir: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """Path of the released checkpoint, downloading it from Hugging Face on first use.

    Raises ModelError with one line of advice when the file cannot be fetched.
    """
    from .errors import ModelError

    folder = Path(cache_dir) if cache_dir is not None else model_cache_dir()
    target = folder / OFFICIAL_FILE
    if target.is_file() and target.stat().st_size > 0:
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
        from huggingface_hub import hf_hub_download
    except ImportError as e:
        raise failure("the huggingface_hub package is not installed") from e
    try:
        path = hf_hub_download(OFFICIAL_REPO, OFFICIAL_FILE, local_dir=folder,
                               tqdm_class=None if progress else _silent_tqdm())
    except Exception as e:  # network, HTTP, offline mode, disk: all end the same way for the user
        raise failure(download_failure_reason(e)) from e
    return Path(path)


def _silent_tqdm():
    from tqdm.auto import tqdm

    class SilentTqdm(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    return SilentTqdm


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
    folder = Path(cache_dir) if cache_dir is not None else model_cache_dir()
    return sum(_size(p) for p in _cache_entries(folder))


def clear_cache(cache_dir: str | os.PathLike | None = None) -> int:
    """Delete downloaded model files (and partial downloads) from the cache folder.

    Other files in the folder are left alone. Returns the number of bytes freed.
    """
    folder = Path(cache_dir) if cache_dir is not None else model_cache_dir()
    freed = 0
    for entry in _cache_entries(folder):
        freed += _size(entry)
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    return freed
