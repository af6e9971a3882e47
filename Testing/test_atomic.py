"""atomic_path: whole files with the permissions a plain open() gives, nothing left on failure."""
from __future__ import annotations

import os
import stat
import sys

import pytest

from TotalFMLib.atomic import atomic_path

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")


@pytest.fixture
def umask():
    """Set the umask for one test, then put the old one back."""
    old = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def write(path, text: str, suffix: str = ".tmp") -> None:
    with atomic_path(path, suffix=suffix) as tmp:
        assert tmp.parent == path.parent and tmp.exists() and tmp.name.endswith(suffix)
        tmp.write_text(text)


@posix_only
@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_new_file_gets_the_mode_open_gives(tmp_path, umask, mask):
    umask(mask)
    plain = tmp_path / "plain.csv"
    with open(plain, "w") as f:
        f.write("x")
    target = tmp_path / "scores.csv"
    write(target, "organ,score\n", suffix=".csv")
    assert target.read_text() == "organ,score\n"
    assert mode(target) == mode(plain) == 0o666 & ~mask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.csv", "scores.csv"]


@posix_only
def test_replaced_file_keeps_its_mode(tmp_path, umask):
    target = tmp_path / "scores.csv"
    target.write_text("old")
    os.chmod(target, 0o640)
    write(target, "new")
    assert target.read_text() == "new" and mode(target) == 0o640


def test_failure_leaves_no_file_and_the_old_target_unchanged(tmp_path):
    new = tmp_path / "sub" / "new.png"
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(new, suffix=".png") as tmp:
            tmp.write_bytes(b"half a picture")
            raise RuntimeError("disk full")
    assert not new.exists() and list(new.parent.iterdir()) == []

    old = tmp_path / "scores.csv"
    old.write_text("kept")
    if sys.platform != "win32":
        os.chmod(old, 0o604)
    before = os.stat(old)
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(old) as tmp:
            tmp.write_text("half")
            raise KeyboardInterrupt
    after = os.stat(old)
    assert old.read_text() == "kept" and (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.csv", "sub"]


def test_temp_names_do_not_collide(tmp_path):
    target = tmp_path / "a.json"
    with atomic_path(target) as first, atomic_path(target) as second:
        assert first != second
        first.write_text("1")
        second.write_text("2")
    assert target.read_text() == "1"  # the outer block finishes last


def test_save_torch_is_all_or_nothing(tmp_path):
    import torch

    from TotalFMLib.atomic import save_torch

    path = tmp_path / "blob.pt"
    assert save_torch({"a": torch.ones(2)}, path) == path
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.ones(2))
    with pytest.raises(Exception):
        save_torch({"a": lambda: None}, path)  # cannot be pickled: the old file stays
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.ones(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blob.pt"]
