"""Labels carried between real CTs by registration (TotalFMLib/training/label_propagation.py,
Training/propagate_labels.py): the height search finds where a slab lies, a known shift is
undone, Dice counts what it should, and the command refuses bad arguments and writes a label
map on the unlabelled chest CTA's grid."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from TotalFMLib.inputs.volume import Volume
from TotalFMLib.training import label_propagation as lp
from TotalFMLib.training.benchmark_bases import base_by_name, load_base
from TotalFMLib.vocabulary import catalogue

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "Training" / "propagate_labels.py"
FAST = replace(lp.RegistrationConfig(), grid_mm=6.0, bspline_mesh_mm=0.0)


@pytest.fixture(scope="module")
def patient_a():
    return load_base(base_by_name("example_ct"))


@pytest.fixture(scope="module")
def patient_c():
    return load_base(base_by_name("chest_ct"))


def test_height_search_finds_where_a_slab_of_the_same_ct_lies(patient_c):
    ct, _ = patient_c
    whole = lp._prepared(ct, FAST)
    import SimpleITK as sitk

    slab = sitk.RegionOfInterest(whole, [whole.GetSize()[0], whole.GetSize()[1], 20], [0, 0, 17])
    k, difference = lp.height_shift(slab, whole, min_overlap=0.5)
    assert k == -17 and difference < 0.01   # (the body-area column is scaled by each scan's own largest slice)


def test_a_known_shift_is_undone_and_the_labels_land_on_the_organs(patient_a):
    ct, seg = patient_a
    offset = np.array([12.0, -9.0, 21.0])   # mm: the same patient, moved, and its scan 30 slices shorter
    kept = slice(0, ct.shape[0] - 30)
    moved_ct = Volume(ct.array[kept], ct.spacing, tuple(np.add(ct.origin, offset)), ct.direction, source="moved A")
    moved_seg = Volume(seg.array[kept], seg.spacing, moved_ct.origin, seg.direction, source="moved A labels")
    reg = lp.register(ct, moved_ct, FAST)
    carried = lp.propagate(moved_seg, ct, reg)
    assert carried.same_grid(ct) and carried.array.dtype == np.int16
    covered = lp.coverage(moved_ct, ct, reg)
    assert abs(covered.mean() - kept.stop / ct.shape[0]) < 0.05   # the shorter scan covers only its part
    assert not carried.array[~covered].any()
    liver = catalogue.organ("liver").label_id
    inside = np.where(covered, seg.array, 0)
    registered = lp.dice(carried.array == liver, inside == liver)
    assert registered > 0.9
    # without registration (identity) the same labels miss by the shift
    import SimpleITK as sitk

    none = sitk.Transform(3, sitk.sitkIdentity)
    unregistered = lp.propagate(moved_seg, ct, lp.Registration(none, none, 0.0)).array
    assert lp.dice(unregistered == liver, inside == liver) < registered - 0.1


def test_dice_by_label_counts_present_labels_groups_and_the_size_floor():
    truth = np.zeros((10, 10, 10), np.int16)
    truth[:5] = 1
    truth[5:, :5] = 2
    truth[9, 9, 9] = 3                      # 1 voxel: under the floor
    carried = truth.copy()
    carried[:5, :5] = 2                     # half of 1 taken by 2
    got = lp.dice_by_label(carried, truth, voxel_ml=0.1, min_ml=1.0)
    assert set(got) == {"1", "2"}
    assert got["1"] == pytest.approx(2 * 250 / (250 + 500))
    assert got["2"] == pytest.approx(2 * 250 / (500 + 250))
    both = lp.dice_by_label(carried, truth, voxel_ml=0.1, min_ml=1.0, groups={"one_and_two": (1, 2)})
    assert both == {"one_and_two": pytest.approx(1.0)}
    scan = np.zeros(truth.shape, bool)
    scan[:, :5] = True                      # the moving scan covered only this half
    inside = lp.dice_by_label(np.where(scan, truth, 0), truth, voxel_ml=0.1, min_ml=1.0, within=scan)
    assert inside == {"1": pytest.approx(1.0), "2": pytest.approx(1.0)}
    with pytest.raises(ValueError, match="differ in shape"):
        lp.dice_by_label(carried[:5], truth, 0.1)
    with pytest.raises(ValueError, match="unknown registration metric"):
        lp._method(replace(lp.RegistrationConfig(), metric="voodoo"))


def _run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=ROOT)


@pytest.mark.parametrize("args, message", [
    ([], "give --measure or --write FILE"),
    (["--measure", "--pairs", "chest_ct"], "is not moving:fixed"),
    (["--measure", "--metric", "voodoo"], "unknown metric 'voodoo'"),
    (["--write", "x.nii.gz", "--metric", "mean_squares,mutual_information"], "--write takes one --metric"),
])
def test_the_command_refuses_bad_arguments_in_one_line(args, message):
    r = _run(*args)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


def test_measure_prints_the_chest_pairs_dice_and_write_makes_a_label_map_on_the_ctas_grid(tmp_path):
    r = _run("--measure", "--pairs", "chest_ct:ct_chest", "--mesh-mm", "0", "--grid-mm", "8",
             "--out", str(tmp_path / "m.md"))
    assert r.returncode == 0, r.stderr
    rows = {line.split("|")[1].strip(): line for line in r.stdout.splitlines() if line.startswith("| lung_")}
    assert set(rows) == {"lung_left", "lung_right"}
    for line in rows.values():     # carried whole lungs overlap the Slicer chest's own lungs
        assert float(line.split("|")[3]) > 0.6
    assert "chest_ct onto ct_chest" in (tmp_path / "m.md").read_text()

    out = tmp_path / "cta.nii.gz"
    r = _run("--write", str(out), "--from", "chest_ct", "--onto", "chest_cta", "--mesh-mm", "0", "--grid-mm", "8")
    assert r.returncode == 0, r.stderr
    import SimpleITK as sitk

    from TotalFMLib.inputs.ct import load_ct
    from TotalFMLib.inputs.sample_data import fetch

    written = Volume.from_sitk(sitk.ReadImage(str(out)))
    assert written.same_grid(load_ct(fetch("chest_cta")))
    ids = set(np.unique(written.array).tolist())
    assert {catalogue.organ(n).label_id for n in ("aorta", "heart", "lung_upper_lobe_left")} <= ids


def test_the_chest_cta_is_an_opt_in_patient_d_with_only_its_trusted_carried_labels(tmp_path, training_dir, capsys):
    import runpy

    from TotalFMLib.training import benchmark_bases as BB
    from TotalFMLib.training import benchmark_data as B
    from TotalFMLib.training.native_findings import benchmark_native

    d = BB.base_by_name("chest_cta")
    assert d.patient == "D" and d.labels_from == "chest_ct" and d not in BB.BASES   # the default benchmark is unchanged
    cfg = B.BenchmarkConfig(cases={"train": 1, "eval": 1}, crop_size=32, frames=8, bases=("chest_ct", "chest_cta"),
                            organs=("liver", "spleen", "aorta", "lung_lower_lobe_right"), finding_rate=0.8, seed=3)
    B.build_benchmark(tmp_path, cfg)
    entries = B.read_manifest(tmp_path)
    assert sorted({e["patient"] for e in entries}) == ["C", "D"]
    assert [b.name for b in B.built_bases(tmp_path)] == ["chest_ct", "chest_cta"]
    ct, seg = BB.load_base(d, tmp_path / "bases")        # cached by the build: carried once
    trusted = {catalogue.organ(n).label_id for n in d.trusted}
    assert set(np.unique(seg.array).tolist()) - {0} == trusted
    assert seg.same_grid(ct) and "carried onto" in seg.source
    for e in entries:
        if e["patient"] == "D":                           # D's crops: only the organs its labels keep
            organs = set(torch.load(tmp_path / e["shard"], weights_only=False)["organs"])
            assert organs and organs <= {"liver", "lung_lower_lobe_right"}
    assert "chest_cta" in benchmark_native(tmp_path, entries)
    # the organ table shows the benchmark's own patients: D with the organs kept from its labels
    assert runpy.run_path(str(training_dir / "base_organs.py"))["main"](["--benchmark", str(tmp_path)]) == 0
    shown = [line.split("|")[1:3] for line in capsys.readouterr().out.splitlines()[2:]]
    d_organs = {organ.strip() for patient, organ in shown if patient.strip() == "D"}
    assert d_organs == {"liver", "lung_lower_lobe_left", "lung_lower_lobe_right"}
    assert {patient.strip() for patient, _ in shown} == {"C", "D"}
    (tmp_path / "benchmark.json").write_text("{not json")
    from TotalFMLib.errors import InputError

    with pytest.raises(InputError, match="benchmark.json.*not a benchmark summary"):
        B.built_bases(tmp_path)
    assert B.built_bases(tmp_path / "no such benchmark") == BB.BASES
