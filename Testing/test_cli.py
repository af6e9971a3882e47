"""The `totalfm` command on the real example CT: outputs, and bad input that writes nothing."""
import csv
import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from TotalFMLib.vocabulary.catalogue import resolve
from TotalFMLib.cli import main
from TotalFMLib.errors import InputError
from TotalFMLib.vocabulary.findings import findings_for_organ
from TotalFMLib.results import ANY_LESION, SCORE_COLUMNS


def test_analyze_writes_a_row_per_present_default_organ_and_finding(
        tmp_path, example_ct_path, example_seg_path, tiny_checkpoint, home, capsys):
    out = tmp_path / "out"
    code = main(["analyze", "--ct", str(example_ct_path), "--seg", str(example_seg_path),
                 "--model", str(tiny_checkpoint), "--csv", str(out / "s.csv"), "--json", str(out / "s.json"),
                 "--png", str(out / "s.png"), "-q"])
    assert code == 0
    with open(out / "s.csv") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == SCORE_COLUMNS
        rows = list(reader)
    present = set(np.unique(sitk.GetArrayFromImage(sitk.ReadImage(str(example_seg_path)))).tolist())
    organs = [o.name for o in resolve(None) if o.label_id in present]
    expected = {(o, ANY_LESION) for o in organs}
    expected |= {(o, f.finding) for o in organs for f in findings_for_organ(o)}
    assert {(r["organ"], r["finding"]) for r in rows} == expected
    assert len(rows) == len(expected)
    assert {r["case_id"] for r in rows} == {"example_ct"}
    assert len(json.loads((out / "s.json").read_text())["rows"]) == len(rows)
    assert (out / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "wrote" in capsys.readouterr().out


def _write(array, like, path, dtype=None):
    img = sitk.GetImageFromArray(array if dtype is None else array.astype(dtype))
    if like is not None and img.GetDimension() == 3:
        img.CopyInformation(like)
    sitk.WriteImage(img, str(path))
    return path


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory, example_ct_path, example_seg_path, sample):
    d = tmp_path_factory.mktemp("bad")
    ct = sitk.ReadImage(str(example_ct_path))
    seg = sitk.ReadImage(str(example_seg_path))
    hu = sitk.GetArrayFromImage(ct).astype(np.float32)
    labels = sitk.GetArrayFromImage(seg)
    unknown = labels.copy()
    unknown[labels == 5] = 200
    return {
        "not 3-D": (_write(hu[40], None, d / "slice.nii.gz"), example_seg_path, "2-D"),
        "not CT-like": (_write((hu + 1024) / 4096, ct, d / "scaled.nii.gz"), example_seg_path, "do not look like CT"),
        "geometry": (example_ct_path, _write(labels[:-5], None, d / "short_seg.nii.gz", np.int16), "does not match"),
        "unknown labels": (example_ct_path, _write(unknown, ct, d / "unknown.nii.gz", np.int16), "200"),
        "no known organ": (sample("ct_chest_nrrd"), sample("seg_nrrd"), "TotalSegmentator organ"),
        "missing file": (d / "nothere.nii.gz", example_seg_path, "no such file"),
    }


@pytest.mark.parametrize("kind", ["not 3-D", "not CT-like", "geometry", "unknown labels", "no known organ",
                                  "missing file"])
def test_bad_input_exits_nonzero_with_one_line_and_no_output(kind, bad_inputs, tmp_path, tiny_checkpoint,
                                                             home, capsys):
    ct, seg, words = bad_inputs[kind]
    out = tmp_path / "out"
    code = main(["analyze", "--ct", str(ct), "--seg", str(seg), "--model", str(tiny_checkpoint),
                 "--csv", str(out / "s.csv"), "--png", str(out / "s.png"), "-q"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("totalfm: error: ") and "\n" not in err and "Traceback" not in err
    named = {"not 3-D": ct, "not CT-like": ct, "missing file": ct}.get(kind, seg)
    assert named.name in err and words in err
    assert not out.exists() or not any(out.iterdir())


def test_listing_commands_run_as_a_program():
    for command in ("organs", "findings"):
        done = subprocess.run([sys.executable, "-m", "TotalFMLib.cli", command], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert ("kidney_left" if command == "organs" else "pleural effusion") in done.stdout


def test_without_a_segmentation_totalsegmentator_is_asked_for(tmp_path, example_ct_path, tiny_checkpoint, home,
                                                              capsys):
    """No --seg runs TotalSegmentator; where its nnU-Net is not installed (as in CI), one clear line."""
    pytest.importorskip("totalsegmentator")
    if importlib.util.find_spec("nnunetv2") is not None:
        pytest.skip("TotalSegmentator inference is installed: this would segment for real")
    out = tmp_path / "out"
    code = main(["analyze", "--ct", str(example_ct_path), "--model", str(tiny_checkpoint),
                 "--csv", str(out / "s.csv"), "-q"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2
    assert err.startswith("totalfm: error: TotalSegmentator inference is not installed") and "[segment]" in err
    assert not out.exists()


def test_segmentation_runs_on_the_device_the_model_is_given():
    import torch

    from TotalFMLib.inputs.segment import totalsegmentator_device

    assert totalsegmentator_device("cpu") == "cpu"
    assert totalsegmentator_device("cuda") == "gpu"
    assert totalsegmentator_device("cuda:1") == "gpu:1"  # the index is kept
    assert totalsegmentator_device(torch.device("cuda", 2)) == "gpu:2"
    assert totalsegmentator_device("mps") == "mps"
    assert totalsegmentator_device(None) == ("gpu" if torch.cuda.is_available() else "cpu")
    assert totalsegmentator_device("gpu:3") == "gpu:3"  # TotalSegmentator's own names pass through
    with pytest.raises(InputError, match="'tpu' is not a torch device name"):
        totalsegmentator_device("tpu")
    with pytest.raises(InputError, match="runs on cpu, cuda"):
        totalsegmentator_device("meta")


def test_cli_device_reaches_the_segmentation(tmp_path, example_ct_path, tiny_checkpoint, home, capsys, monkeypatch):
    import TotalFMLib.inputs.segment as segment
    from TotalFMLib.errors import ModelError

    seen = []

    def fake_segment_ct(ct_path, out_path, fast=True, device=None):
        seen.append(device)
        raise ModelError("stopped here by the test")

    monkeypatch.setattr(segment, "segment_ct", fake_segment_ct)
    code = main(["analyze", "--ct", str(example_ct_path), "--model", str(tiny_checkpoint), "--device", "cuda:1",
                 "--csv", str(tmp_path / "s.csv"), "-q"])
    assert code == 2 and seen == ["cuda:1"]
    assert "stopped here by the test" in capsys.readouterr().err


def test_every_option_of_every_command_has_help():
    import argparse

    from TotalFMLib.cli import build_parser

    def subcommands(parser):
        return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices

    commands = subcommands(build_parser())
    assert set(commands) == {"analyze", "search", "organs", "findings", "demo", "index", "find", "pacs", "serve"}
    from TotalFMWeb.serve import build_parser as serve_parser  # totalfm serve's own options

    commands["serve"] = serve_parser()
    pacs = subcommands(commands.pop("pacs"))
    assert set(pacs) == {"find", "get", "store", "analyze"}
    commands.update({f"pacs {name}": sub for name, sub in pacs.items()})
    missing = [f"{name} {'/'.join(action.option_strings) or action.dest}"
               for name, sub in commands.items() for action in sub._actions
               if not isinstance(action, argparse._HelpAction) and not (action.help or "").strip()]
    assert not missing, missing


def test_findings_listing_has_a_header_is_sorted_and_keeps_whole_synonyms(capsys):
    from TotalFMLib.vocabulary.findings import load_findings

    assert main(["findings"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["finding", "organs"] and "synonyms" in lines[0]
    names = [f.finding for f in load_findings()]
    listed = [line[:32].strip() for line in lines[1:] if line[:32].strip()]
    assert listed == sorted(names, key=str.lower)
    text = " ".join(line[75:].strip() for line in lines[1:])
    for f in load_findings():
        for synonym in f.synonyms:
            assert synonym in text, synonym  # never cut mid-word


def test_the_console_table_says_when_it_leaves_organs_out(tmp_path, example_ct_path, example_seg_path,
                                                          tiny_checkpoint, home, capsys):
    args = ["analyze", "--ct", str(example_ct_path), "--seg", str(example_seg_path), "--model", str(tiny_checkpoint),
            "--csv", str(tmp_path / "s.csv"), "-q"]
    assert main(args + ["--rows", "5"]) == 0
    out = capsys.readouterr().out.splitlines()
    organs = len({r["organ"] for r in csv.DictReader(open(tmp_path / "s.csv"))})
    assert f"... {organs - 5} more organs not shown (--rows 0 shows all;" in "\n".join(out)
    assert main(args + ["--rows", "0"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.strip() and not line.startswith(("organ ", "wrote "))]
    assert "more organs not shown" not in out and len(rows) == organs
