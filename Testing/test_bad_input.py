"""Bad input and faults, as a new user meets them through `totalfm analyze`: each is refused before
the heavy work with exit status 2 and one line naming the file and the problem, and no output
file is left behind. Real data: the TotalSegmentator example CT and its segmentation."""
from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from TotalFMLib.cli import main

OUTPUTS = ("s.csv", "s.json", "s.png")


def run(args, capsys):
    """(exit status, stderr lines) of one CLI run."""
    code = main(args)
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    return code, err


def assert_refused(code, err, *words):
    assert code == 2
    assert len(err) == 1, err
    line = err[0]
    assert line.startswith("totalfm: error: ") and "Traceback" not in line and "weights_only" not in line
    for word in words:
        assert word in line, (word, line)


def no_outputs(folder):
    return not folder.exists() or not any(p.name in OUTPUTS for p in folder.rglob("*"))


def analyze_args(ct, seg, out, model, *extra):
    return ["analyze", "--ct", str(ct), "--seg", str(seg), "--model", str(model), "--csv", str(out / "s.csv"),
            "--json", str(out / "s.json"), "-q", *extra]


def write_like(array, like: sitk.Image, path, dtype=None):
    image = sitk.GetImageFromArray(array if dtype is None else array.astype(dtype))
    image.CopyInformation(like)
    sitk.WriteImage(image, str(path))
    return path


@pytest.fixture(scope="module")
def real(example_ct_path, example_seg_path):
    ct = sitk.ReadImage(str(example_ct_path))
    seg = sitk.ReadImage(str(example_seg_path))
    return ct, seg, sitk.GetArrayFromImage(ct).astype(np.float32), sitk.GetArrayFromImage(seg)


# ------------------------------------------------------------------------------- the CT
@pytest.mark.parametrize("where", ["edge", "liver"])
def test_nan_voxels_in_the_ct_are_refused(where, real, example_seg_path, tiny_checkpoint, home, tmp_path, capsys):
    ct, seg, hu, labels = real
    hu = hu.copy()
    if where == "edge":
        hu[0, :20, :20] = np.nan  # 400 voxels at the edge of the field of view
        count = 400
    else:
        hu[labels == 5] = np.inf if where == "inf" else np.nan  # every liver voxel (label 5)
        count = int((labels == 5).sum())
    bad = write_like(hu, ct, tmp_path / "nan_ct.nii.gz")
    out = tmp_path / "out"
    code, err = run(analyze_args(bad, example_seg_path, out, tiny_checkpoint), capsys)
    assert_refused(code, err, "nan_ct.nii.gz", f"holds {count} NaN or infinite voxels")
    assert no_outputs(out)


def test_infinite_voxels_in_a_volume_are_refused(real):
    from TotalFMLib.errors import InputError
    from TotalFMLib.inputs.case import load_case
    from TotalFMLib.inputs.volume import Volume

    ct, seg, hu, labels = real
    hu = hu.copy()
    hu[3, 4, 5] = np.inf
    volume = Volume(hu, ct.GetSpacing(), ct.GetOrigin(), ct.GetDirection(), source="in memory")
    with pytest.raises(InputError, match="^in memory: holds NaN or infinite values"):
        load_case(volume, Volume(labels, ct.GetSpacing(), ct.GetOrigin(), ct.GetDirection()))


# --------------------------------------------------------------------------- outputs
def test_an_existing_folder_as_output_is_refused_before_the_model_loads(example_ct_path, example_seg_path,
                                                                       tiny_checkpoint, home, tmp_path, capsys,
                                                                       monkeypatch):
    from TotalFMLib.totalfm import TotalFM

    monkeypatch.setattr(TotalFM, "load", lambda *a, **k: pytest.fail("the model must not load"))
    (tmp_path / "taken").mkdir()
    code, err = run(["analyze", "--ct", str(example_ct_path), "--seg", str(example_seg_path), "--model",
                     str(tiny_checkpoint), "--csv", str(tmp_path / "taken"), "-q"], capsys)
    assert_refused(code, err, "taken", "is an existing folder")
    assert list((tmp_path / "taken").iterdir()) == []


def test_an_output_under_a_file_is_refused_and_no_other_output_is_written(example_ct_path, example_seg_path,
                                                                          tiny_checkpoint, home, tmp_path, capsys):
    (tmp_path / "plain.txt").write_text("not a folder")
    code, err = run(["analyze", "--ct", str(example_ct_path), "--seg", str(example_seg_path), "--model",
                     str(tiny_checkpoint), "--csv", str(tmp_path / "ok" / "s.csv"),
                     "--json", str(tmp_path / "plain.txt" / "s.json"), "-q"], capsys)
    assert_refused(code, err, "plain.txt/s.json", "is a file, not a folder")
    assert no_outputs(tmp_path / "ok")  # the CSV, which could have been written, is not left behind


def _read_only_mount(folder):
    """A shell prefix that runs a command with ``folder`` a read-only file system: a tmpfs mounted
    read-only in a private mount namespace (root needs no user namespace; others get one).
    None where neither works here."""
    if shutil.which("unshare") is None:
        return None
    for flags in (["-m"], ["-r", "-m"]):
        probe = subprocess.run(["unshare", *flags, "sh", "-c", f"mount -t tmpfs -o ro tmpfs '{folder}' && "
                                f"! touch '{folder}/x' 2>/dev/null"], capture_output=True)
        if probe.returncode == 0:
            return ["unshare", *flags, "sh", "-c", f"mount -t tmpfs -o ro tmpfs '{folder}' && exec \"$0\" \"$@\""]
    return None


def test_an_output_in_a_read_only_folder_is_refused_before_the_model_loads(example_ct_path, example_seg_path,
                                                                          tiny_checkpoint, home, tmp_path):
    folder = tmp_path / "readonly"
    folder.mkdir()
    prefix = _read_only_mount(folder)
    if prefix is None:
        if os.geteuid() == 0:
            pytest.skip("no read-only file system can be made here (no mount namespace), and root ignores "
                        "folder permissions")
        folder.chmod(0o555)
        prefix = []
    done = subprocess.run([*prefix, sys.executable, "-m", "TotalFMLib", "analyze", "--ct", str(example_ct_path),
                           "--seg", str(example_seg_path), "--model", str(tiny_checkpoint),
                           "--csv", str(folder / "s.csv"), "-q"],
                          capture_output=True, text=True, env=dict(os.environ, TOTALFM_HOME=str(home)), timeout=120)
    err = [line for line in done.stderr.splitlines() if line.strip()]
    assert_refused(done.returncode, err, "readonly/s.csv", "cannot be written", "not writable")
    folder.chmod(0o755)
    assert list(folder.iterdir()) == []


def test_outputs_are_written_all_or_nothing(tmp_path):
    from TotalFMLib.outputs.destinations import Destinations

    first, second = tmp_path / "a.csv", tmp_path / "b.json"
    first.write_text("old")

    def broken(tmp):
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        Destinations([first, second]).check().write({first: lambda tmp: tmp.write_text("new"), second: broken})
    assert first.read_text() == "old" and not second.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv"]  # no temporary file left
    written = Destinations([first, second]).write({first: lambda t: t.write_text("1"), second: lambda t: t.write_text("2")})
    assert written == [first, second] and first.read_text() == "1" and second.read_text() == "2"


# ------------------------------------------------------------------------- names
@pytest.mark.parametrize("option, value, words", [("--organs", "liver,livr", ("unknown organ 'livr'",)),
                                                  ("--findings", "kidney stoned", ("unknown finding 'kidney stoned'",))])
def test_unknown_organ_or_finding_names_are_refused_before_the_case_and_model_load(
        option, value, words, example_seg_path, tiny_checkpoint, home, tmp_path, capsys, monkeypatch):
    from TotalFMLib import pipeline
    from TotalFMLib.totalfm import TotalFM

    monkeypatch.setattr(TotalFM, "load", lambda *a, **k: pytest.fail("the model must not load"))
    monkeypatch.setattr(pipeline, "open_case", lambda *a, **k: pytest.fail("the case must not be read"))
    out = tmp_path / "out"
    code, err = run(analyze_args(tmp_path / "never_read.nii.gz", example_seg_path, out, tiny_checkpoint,
                                 option, value), capsys)
    assert_refused(code, err, *words)
    assert no_outputs(out)


# ------------------------------------------------------------------------ models
class Unsafe:
    """A pickled object: loading it would run code, so no checkpoint may contain one."""


def _bad_models(folder):
    models = {}
    with open(folder / "pickled.pt", "wb") as f:
        pickle.dump({"model_state_dict": Unsafe()}, f)
    models["pickled.pt"] = "Python pickle holding objects other than tensors"
    (folder / "random.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    models["random.pt"] = "not a torch file"
    torch.save([1, 2, 3], folder / "list.pt")
    models["list.pt"] = "it holds a list"
    torch.save({"weights": torch.zeros(3)}, folder / "other_dict.pt")
    models["other_dict.pt"] = "no 'model_state_dict'"
    torch.save({"model_state_dict": {"fc.weight": torch.zeros(2, 2)}}, folder / "resnet.pt")
    models["resnet.pt"] = "hold no image encoder"
    (folder / "empty.pt").write_bytes(b"")
    models["empty.pt"] = "an empty file"
    return models


def test_a_file_that_is_no_totalfm_checkpoint_gets_one_line(example_ct_path, example_seg_path, home, tmp_path,
                                                           capsys, recwarn):
    for name, words in _bad_models(tmp_path).items():
        out = tmp_path / f"out_{name}"
        code, err = run(analyze_args(example_ct_path, example_seg_path, out, tmp_path / name), capsys)
        assert_refused(code, err, name, "checkpoint", words)
        assert no_outputs(out), name
    assert not [w for w in recwarn.list if "torch" in w.filename], "torch's warnings would print lines of their own"


# ------------------------------------------------------------------- orientation
@pytest.mark.parametrize("mistake, words", [
    ("mirrored", "the liver lies on the patient's left of the spleen"),
    ("axes swapped", "the aorta lies behind the vertebrae"),
])
def test_anatomy_against_the_stated_orientation_warns_but_does_not_refuse(mistake, words, real, tiny_checkpoint,
                                                                         home, tmp_path, capsys):
    """The real CT and labels stored wrongly: mirrored left-right under the same header, or with
    the X and Z axes swapped and a plain header. The run goes on, with one warning that says why."""
    ct, seg, hu, labels = real

    def write(array, path):
        if mistake == "mirrored":
            image = sitk.GetImageFromArray(np.ascontiguousarray(array[:, :, ::-1]))
            image.CopyInformation(ct)
        else:
            image = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(array, (2, 1, 0))))
            image.SetSpacing(ct.GetSpacing()[::-1])
        sitk.WriteImage(image, str(path))
        return path

    bad_ct, bad_seg = write(hu.astype(np.int16), tmp_path / "bad_ct.nii.gz"), write(labels, tmp_path / "bad_seg.nii.gz")
    out = tmp_path / "out"
    code, err = run(analyze_args(bad_ct, bad_seg, out, tiny_checkpoint), capsys)
    assert code == 0
    warnings = [line for line in err if line.startswith("totalfm: warning: ")]
    assert len(warnings) == 1 and "bad_seg.nii.gz" in warnings[0] and "wrong order" in warnings[0]
    assert words in warnings[0]
    assert (out / "s.csv").is_file()


@pytest.mark.parametrize("ct_name, seg_name", [("example_ct", "example_seg"), ("example_ct_sm", "example_seg_sm"),
                                               ("example_ct_dicom", "example_seg_dicom")])
def test_real_cases_in_their_own_orientation_give_no_warning(ct_name, seg_name, sample):
    from TotalFMLib.inputs.case import load_case

    assert load_case(sample(ct_name), sample(seg_name)).warnings == ()


def test_slicer_segments_that_name_groups_say_what_to_rename(sample, tiny_checkpoint, home, tmp_path, capsys):
    out = tmp_path / "out"
    code, err = run(analyze_args(sample("ct_chest_nrrd"), sample("seg_nrrd"), out, tiny_checkpoint), capsys)
    assert_refused(code, err, "Segmentation.seg.nrrd", "TotalSegmentator organ", "'right lung' (group lung_right",
                   "'ribs' (group ribs", "rename each such segment to one structure")
    assert no_outputs(out)
