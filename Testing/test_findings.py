"""Finding catalogue: Merlin's 30 findings, organ mapping, synonyms, user extension, bad lines."""
import subprocess
import sys

import pytest

from TotalFMLib.vocabulary import catalogue
from TotalFMLib.errors import InputError
from TotalFMLib.vocabulary.findings import builtin_path, find, findings_for_organ, load_findings

# the 30 findings of Merlin's zero-shot benchmark, as docs/published_facts.md lists them
MERLIN_30 = [
    "submucosal edema", "aortic valve calcification", "thrombosis", "pancreatic atrophy", "osteopenia",
    "surgically absent gallbladder", "atelectasis", "abdominal aortic aneurysm", "anasarca", "hiatal hernia",
    "lymphadenopathy", "prostatomegaly", "biliary ductal dilation", "cardiomegaly", "splenomegaly",
    "hepatomegaly", "atherosclerosis", "ascites", "pleural effusion", "hepatic steatosis", "appendicitis",
    "gallstones", "bowel obstruction", "free air", "fracture", "coronary calcification", "renal cyst",
    "renal hypodensities", "hydronephrosis", "metastatic disease",
]


def test_every_merlin_finding_is_in_the_catalogue():
    table = load_findings()
    for name in MERLIN_30:
        f = find(name, table)
        assert f.finding == name and f.source == "Merlin-30" and f.organs, name
    assert sorted(f.finding for f in table if f.source == "Merlin-30") == sorted(MERLIN_30)


def test_organ_findings_and_groups_expand():
    lungs = set(catalogue.groups()["lungs"])
    assert set(find("pleural effusion").organs) == lungs
    assert set(find("stone").organs) == {"kidney_left", "kidney_right", "urinary_bladder"}
    for name in ("cyst", "mass", "enlargement", "atrophy", "calcification", "hypodense lesion",
                 "hyperdense lesion", "steatosis"):
        assert find(name).source == "organ"
    assert {"rib_left_5", "vertebrae_L1"} <= set(find("fracture").organs)


def test_synonyms_ignore_case_and_punctuation():
    assert find("Nephrolithiasis").finding == "stone"
    assert find("KIDNEY STONE").finding == "stone"
    assert find("renal-calculus").finding == "stone"
    assert find("fatty liver").finding == "hepatic steatosis"
    assert find("Cholelithiasis").finding == "gallstones"
    with pytest.raises(InputError, match="unknown finding 'unicorn'"):
        find("unicorn")


def test_findings_for_organ_score_each_concept_once():
    kidney = [f.finding for f in findings_for_organ("Left kidney")]
    assert {"renal cyst", "stone", "hydronephrosis"} <= set(kidney)
    assert "cyst" not in kidney and "gallstones" not in kidney
    assert "gallstones" in [f.finding for f in findings_for_organ("gallbladder")]
    for o in catalogue.organs():
        kinds = [f.kind for f in findings_for_organ(o.name) if f.kind in ("cyst", "stone")]
        assert len(kinds) == len(set(kinds)), o.name


def test_user_csv_adds_and_replaces(tmp_path, monkeypatch):
    user = tmp_path / "mine.csv"
    user.write_text("finding,organs,synonyms,kind,source\n"
                    "renal infarct,kidneys,kidney infarction,vascular,user\n"
                    "stone,kidney_left,kidney stone,stone,user\n")
    table = load_findings(user)
    assert find("kidney infarction", table).organs == ("kidney_right", "kidney_left")
    assert find("stone", table).organs == ("kidney_left",)
    assert len(table) == len(load_findings()) + 1
    monkeypatch.setenv("TOTALFM_FINDINGS", str(user))
    assert find("renal infarct").source == "user"


def test_bad_organ_names_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("# my findings\n"
                   "finding,organs,synonyms,kind,source\n"
                   "renal infarct,kidneys,,vascular,user\n"
                   "gizzard stone,gizzard;kidneys,,stone,user\n")
    with pytest.raises(InputError) as e:
        load_findings(bad)
    assert str(bad) in str(e.value) and "line 4" in str(e.value) and "gizzard" in str(e.value)


@pytest.mark.parametrize("body, problem", [
    ("finding,organ\nx,liver\n", "lacks the column"),
    ("finding,organs\nx,liver,extra,fields\n", "line 2: 4 fields"),
    ("finding,organs\nx,\n", "line 2: finding 'x' names no organ"),
    ("finding,organs\nx,liver\nX,spleen\n", "line 3: finding 'X' already defined on line 2"),
    ("finding,organs,synonyms\nrenal stone disease,kidneys,nephrolithiasis\n", "line 2: 'nephrolithiasis'"),
    ("finding,organs\nany lesion,liver\n", "reserved"),
    ("", "empty"),
])
def test_bad_catalogue_files(tmp_path, body, problem):
    path = tmp_path / "user.csv"
    path.write_text(body)
    with pytest.raises(InputError, match=problem) as e:
        load_findings(path)
    assert str(e.value).startswith(str(path))


def test_missing_user_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_findings(tmp_path / "nope.csv")


def test_builtin_table_is_packaged_and_light():
    assert builtin_path().is_file()
    code = ("import sys, TotalFMLib.vocabulary.findings, TotalFMLib.vocabulary.prompts, TotalFMLib.outputs.export, TotalFMLib.zeroshot.scoring, "
            "TotalFMLib.zeroshot.search; heavy = [m for m in ('torch', 'transformers', 'sentence_transformers', "
            "'SimpleITK') if m in sys.modules]; print(heavy); sys.exit(bool(heavy))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
