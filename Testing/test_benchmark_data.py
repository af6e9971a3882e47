"""A tiny build of the synthetic-lesion benchmark from the real PyPI CTs: splits, shards, manifest, phrasings."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from TotalFMLib.errors import InputError
from TotalFMLib.training import benchmark_data as B
from TotalFMLib.training import benchmark_bases as BB
from TotalFMLib.training import crop_maps
from TotalFMLib.training import phrase_bank
from TotalFMLib.training.reports import report_to_pairs

ORGANS = ("liver", "spleen", "kidney_left", "gallbladder", "aorta", "stomach", "lung_lower_lobe_right")
PATIENTS = {"example_ct": "A", "example_ct_dicom": "B", "chest_ct": "C"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, sample):
    for name in ("example_ct", "example_seg", "example_ct_dicom", "example_seg_dicom", "chest_ct", "chest_seg",
                 "chest_structures"):
        sample(name)  # skips only when the package index is unreachable
    cfg = B.BenchmarkConfig(cases={"train": 1, "eval": 1}, crop_size=32, frames=8, organs=ORGANS,
                            finding_rate=0.8, slab_fraction=1.0, seed=3)
    root = tmp_path_factory.mktemp("bench")
    calls = []
    manifest = B.build_benchmark(root, cfg, progress=lambda f, m: calls.append((f, m)))
    return root, cfg, manifest, calls


def _shard(root, entry):
    return torch.load(root / entry["shard"], weights_only=True)


def test_every_patient_has_training_and_evaluation_cases(tiny):
    root, cfg, manifest, calls = tiny
    entries = B.read_manifest(root)
    assert manifest == root / "manifest.jsonl"
    assert [(e["case_id"], e["split"], e["patient"]) for e in entries] == [
        (f"{base}-{role}-000", role, patient) for base, patient in PATIENTS.items() for role in B.ROLES]
    assert calls[-1][0] == 1.0 and len(calls) == 6
    summary = json.loads((root / "benchmark.json").read_text())
    assert summary["findings"] == list(B.FINDINGS) and summary["config"]["seed"] == 3
    assert sorted(summary["counts"]) == sorted(f"{p}/{r}" for p in "ABC" for r in B.ROLES)


def test_folds_never_train_on_the_held_out_patient(tiny):
    from TotalFMLib.training.folds import fold_entries, patients, role_in_fold

    root, _, _, _ = tiny
    entries = B.read_manifest(root)
    assert patients(entries) == ["A", "B", "C"]
    for held in patients(entries):
        fold = fold_entries(entries, held)
        assert all(e["patient"] != held for e in fold["train"] + fold["val"])
        assert fold["test"] and all(e["patient"] == held and e["split"] == "eval" for e in fold["test"])
        assert fold["unseen"] and all(e["patient"] == held and e["split"] == "train" for e in fold["unseen"])
        assert {e["split"] for e in fold["train"]} == {"train"} and {e["split"] for e in fold["val"]} == {"eval"}
        assert [role_in_fold(e, held) for e in entries if e["patient"] == held] == [None, "test"]
    final = fold_entries(entries, None)
    assert not final["test"] and not final["unseen"] and len(final["train"]) == len(final["val"]) == 3
    with pytest.raises(InputError, match="patient 'D' is not in the benchmark"):
        fold_entries(entries, "D")


def test_shards_match_the_manifest_and_mark_where_findings_lie(tiny):
    root, cfg, _, _ = tiny
    marked = 0
    for entry in B.read_manifest(root):
        shard = _shard(root, entry)
        n = len(shard["organs"])
        assert shard["images"].dtype == torch.float16 and tuple(shard["images"].shape) == (n, 3, 32, 32, 8)
        assert 0 <= float(shard["images"].min()) and float(shard["images"].max()) <= 1
        assert shard["organs"] == entry["organs"] and set(shard["organs"]) <= set(ORGANS)
        assert len(shard["sentences"]) == len(shard["labels"]) == n
        assert all(1 <= len(s) <= cfg.phrasings for s in shard["sentences"])
        pairs = [[o, f] for o, labs in zip(shard["organs"], shard["labels"]) for f in labs]
        assert pairs == entry["findings"]
        matrix = shard["label_matrix"].numpy()
        assert matrix.shape == (n, len(B.FINDINGS))
        for row, labs in zip(matrix, shard["labels"]):
            assert {B.FINDINGS[i] for i in np.flatnonzero(row)} == set(labs)
        maps, organ_maps = shard["lesion_maps"], shard["organ_maps"]
        assert tuple(maps.shape) == (n, len(B.FINDINGS), 8, 8, 2) and maps.dtype == torch.uint8
        assert tuple(organ_maps.shape) == (n, 8, 8, 2) and all(int(m.max()) > 0 for m in organ_maps)
        for i, labs in enumerate(shard["labels"]):  # every finding of an organ shows in that organ's crop
            for f in labs:
                assert int(maps[i, B.FINDINGS.index(f)].max()) > 0, (entry["case_id"], shard["organs"][i], f)
                marked += 1
        assert int(maps.sum()) == 0 or pairs  # no map where nothing was inserted
        records = json.loads(shard["records"])
        assert sorted((r["organ"], r["finding"]) for r in records) == sorted(map(tuple, pairs))
        assert all(r["voxels"] > 0 for r in records)
        assert tuple(shard["whole_images"].shape) == (1, 3, 32, 32, 8)
        assert shard["whole_labels"] == [sorted({f for _, f in pairs})]
        assert shard["report"] == shard["whole_sentences"][0][0]
        augment = json.loads(shard["augment"])
        assert ("slab" in augment) == (entry["split"] == "train")  # slabs only for training cases
        if entry["split"] == "eval":  # evaluation cases are only deformed and noised
            assert set(augment) == {"deformation", "noise_hu"}
    assert marked >= 3  # finding_rate 0.8 over 11 finding types


def test_lesion_maps_follow_the_crop_recipe(dicom_base):
    """A mask inserted by hand lands in the map where the crop recipe puts its voxels."""
    from TotalFMLib.crops.organ_crops import organ_crops
    from TotalFMLib.training.lesions import LesionRecord

    ct, seg = BB.base_on_grid("example_ct_dicom", 1.0, 3.0)
    crops = organ_crops(ct, seg, ["liver", "spleen"], crop_size=32, frames=8)
    box = crops.boxes["liver"]
    mask = np.zeros(ct.shape, bool)
    y, x = (box[1].start + box[1].stop) // 2, box[2].start
    mask[:, y - 8:y + 8, x:x + 16] = True  # a slab at the liver crop's first columns, middle rows
    k = B.FINDINGS.index("hypodense lesion")
    shows, own = crop_maps.lesion_maps(ct, [LesionRecord("liver", "hypodense lesion", {}, mask)], crops, 32, 8)
    liver, spleen = crops.organs.index("liver"), crops.organs.index("spleen")
    cover = shows[liver, k].float().mean(dim=2)
    assert float(cover[:, :2].mean()) > float(cover[:, 4:].mean()) and float(cover.max()) > 0
    assert torch.equal(own[liver], shows[liver])  # the liver's own crop: both maps alike
    both = np.zeros(ct.shape, bool)  # a liver finding where the liver's and the spleen's crop boxes overlap
    sy, sx = crops.boxes["spleen"][1], crops.boxes["spleen"][2]
    y0, x0 = max(box[1].start, sy.start), max(box[2].start, sx.start)
    assert y0 + 8 < min(box[1].stop, sy.stop) and x0 + 8 < min(box[2].stop, sx.stop)
    both[:, y0:y0 + 8, x0:x0 + 8] = True
    shows, own = crop_maps.lesion_maps(ct, [LesionRecord("liver", "hypodense lesion", {}, both)], crops, 32, 8)
    assert shows[spleen, k].any() and shows[liver, k].any()  # the spleen's crop shows it
    assert own[liver, k].any() and not own[spleen].any()  # but it is the liver's finding, not the spleen's


def test_reports_parse_back_to_the_ground_truth(tiny):
    root, _, _, _ = tiny
    for entry in B.read_manifest(root):
        shard = _shard(root, entry)
        for variant in shard["whole_sentences"][0]:
            pairs = report_to_pairs(entry["case_id"], variant, organs=shard["organs"])
            got = {}
            for p in pairs:
                got.setdefault(p.organ, set()).add(p.label)
            for organ, labs in zip(shard["organs"], shard["labels"]):
                assert got.get(organ) == ({"abnormal"} if labs else {"normal"}), (organ, labs, variant)


def _generic(text: str) -> str:
    return re.sub(r"\d+(\.\d+)? (mm|cm)", "#", text)


def test_evaluation_cases_use_only_held_out_phrasings(tiny):
    root, _, _, _ = tiny
    for entry in B.read_manifest(root):
        shard = _shard(root, entry)
        bank = "test" if entry["split"] == "eval" else "train"
        other = "train" if bank == "test" else "test"
        for organ, labs, sentences in zip(shard["organs"], shard["labels"], shard["sentences"]):
            if len(labs) > 1:
                continue  # joined sentences of two findings
            if labs:
                own = phrase_bank.abnormal_phrasings(labs[0], organ, bank, 12.0)
                foreign = phrase_bank.abnormal_phrasings(labs[0], organ, other, 12.0)
            else:
                own, foreign = (phrase_bank.normal_phrasings(organ, bank), phrase_bank.normal_phrasings(organ, other))
            own, foreign = {_generic(s) for s in own}, {_generic(s) for s in foreign}
            assert own.isdisjoint(foreign)
            for s in sentences:
                assert _generic(s) in own and _generic(s) not in foreign, (entry["split"], s)


def test_cache_reads_with_the_training_dataset(tiny):
    from TotalFMLib.training.dataset import WHOLE_VOLUME_LAYOUT, CropDataset

    root, _, _, _ = tiny
    entries = B.read_manifest(root)
    organs = CropDataset(root, split="train")
    assert len(organs) == sum(len(e["organs"]) for e in entries if e["split"] == "train")
    item = organs[0]
    assert item["image"].shape == (3, 32, 32, 8) and isinstance(item["text"], str)
    assert item["maps"].shape == (len(B.FINDINGS), 8, 8, 2)
    without_c = CropDataset(root, split="train", holdout="C")
    assert {it.case for it in without_c.items} == {e["case_id"] for e in entries if e["split"] == "train"
                                                    and e["patient"] != "C"}
    whole = CropDataset(root, split="eval", layout=WHOLE_VOLUME_LAYOUT)
    assert len(whole) == 3 and whole[0]["text"].startswith("FINDINGS:") and "maps" not in whole[0]


def test_cases_are_deterministic_and_seed_dependent(dicom_base):
    base = BB.base_by_name("example_ct_dicom")
    ct, seg = BB.base_on_grid(base.name, 1.0, 3.0)
    cfg = B.BenchmarkConfig(crop_size=24, frames=4, organs=("liver", "spleen", "aorta"), seed=5)
    a = B.make_case(ct, seg, base, "train", 2, cfg)
    b = B.make_case(ct, seg, base, "train", 2, cfg)
    c = B.make_case(ct, seg, base, "train", 3, cfg)
    d = B.make_case(ct, seg, base, "eval", 2, cfg)
    assert torch.equal(a["images"], b["images"]) and a["sentences"] == b["sentences"]
    assert a["records"] == b["records"] and torch.equal(a["lesion_maps"], b["lesion_maps"])
    assert not torch.equal(a["images"], c["images"]) and not torch.equal(a["images"], d["images"])


def test_a_washout_shows_an_enhanced_patients_training_case_unenhanced_and_keeps_its_other_draws(dicom_base):
    from dataclasses import replace

    base = BB.base_by_name("example_ct_dicom")
    assert base.enhanced and not BB.base_by_name("example_ct").enhanced
    ct, seg = BB.base_on_grid(base.name, 1.0, 3.0)
    cfg = B.BenchmarkConfig(crop_size=24, frames=4, organs=("liver", "spleen", "aorta"), finding_rate=1.0, seed=5)
    washed_cfg = replace(cfg, washout_fraction=1.0)
    plain, washed = B.make_case(ct, seg, base, "train", 2, cfg), B.make_case(ct, seg, base, "train", 2, washed_cfg)
    steps = json.loads(washed["augment"])
    assert "washout" not in json.loads(plain["augment"]) and steps["washout"]["offsets_hu"]["liver"] < -20
    assert {k: v for k, v in steps.items() if k != "washout"} == json.loads(plain["augment"])
    before, after = json.loads(plain["records"]), json.loads(washed["records"])
    assert [(r["organ"], r["finding"]) for r in before] == [(r["organ"], r["finding"]) for r in after] and before
    for r, w in zip(before, after):   # the same lesions at the same places: only their surroundings are darker
        assert r["params"].get("center_voxel") == w["params"].get("center_voxel")
    liver = plain["organs"].index("liver")
    assert washed["images"][liver].float().mean() < plain["images"][liver].float().mean()
    # evaluation cases are never washed out
    assert B.make_case(ct, seg, base, "eval", 2, washed_cfg)["augment"] == B.make_case(ct, seg, base, "eval", 2, cfg)["augment"]


def test_command_line_builds_and_prints_counts(tmp_path, dicom_base, capsys):
    code = B.main(["--out", str(tmp_path), "--train-cases", "0", "--eval-cases", "1", "--bases", "example_ct_dicom",
                   "--crop-size", "24", "--frames", "4", "--organs", "liver,spleen", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0 and "B/eval: 1 cases, 2 organ crops" in out and "manifest:" in out
    assert (tmp_path / "shards" / "example_ct_dicom-eval-000.pt").is_file()
    assert B.main(["--out", str(tmp_path), "--organs", "not_an_organ", "--quiet"]) == 2
    assert "error:" in capsys.readouterr().err
    assert B.main(["--out", str(tmp_path), "--washout-fraction", "1.5", "--quiet"]) == 2
    assert "--washout-fraction must lie in [0, 1]" in capsys.readouterr().err


def test_every_phrasing_parses_back_to_its_organ_and_label():
    from TotalFMLib.training.lesions import INSERTIONS
    from TotalFMLib.training.report_organs import assign_organs
    from TotalFMLib.training.reports import classify

    checked = 0
    for finding, (_, organs) in INSERTIONS.items():
        for organ in organs:
            for split in ("train", "test"):
                phrasings = phrase_bank.abnormal_phrasings(finding, organ, split, 14.0)
                assert len(phrasings) >= 2, (finding, organ, split)
                for s in phrasings + phrase_bank.normal_phrasings(organ, split):
                    want = "normal" if s in phrase_bank.normal_phrasings(organ, split) else "abnormal"
                    assert organ in assign_organs(s) and classify(s) == want, (s, assign_organs(s), classify(s))
                    checked += 1
    assert checked > 300
    train, test = phrase_bank.finding_terms("stone")
    assert train[0] == "stone" and set(train).isdisjoint(test)
    train, test = phrase_bank.finding_terms("ascites")
    assert "abdominal fluid" in train + test  # a radiology-semantic-dict synonym the catalogue lacks


def test_pertinent_negatives_are_not_the_scorers_prompts():
    """Normal organs' "no X" sentences teach negation, but none may be a prompt the zero-shot
    scorer uses, or the evaluation would score with sentences it trained on."""
    from TotalFMLib.vocabulary import prompts
    from TotalFMLib.vocabulary.findings import load_findings
    from TotalFMLib.training.dataset import normalise_sentence as norm
    from TotalFMLib.training.lesions import INSERTIONS

    findings = load_findings()
    organs = sorted({o for _, os_ in INSERTIONS.values() for o in os_})
    checked = 0
    for organ in organs:
        used = {norm(t) for f in findings for pair in [prompts.finding_prompts(organ, f)]
                for t in pair.abnormal + pair.normal}
        used |= {norm(t) for t in prompts.lesion_prompts(organ).abnormal + prompts.lesion_prompts(organ).normal}
        for split in ("train", "test"):
            negatives = phrase_bank.negated_phrasings(organ, split)
            assert set(negatives) <= set(phrase_bank.normal_phrasings(organ, split))
            clash = [t for t in negatives if norm(t) in used]
            assert not clash, clash
            checked += len(negatives)
    assert checked > 200
    liver = phrase_bank.negated_phrasings("liver", "train")
    assert "No evidence of hepatic steatosis in the liver." in liver
    assert not any("gallstone" in t for t in liver)  # only findings the organ can carry


def test_flip_storage_keeps_every_voxel_at_its_place(sample):
    from TotalFMLib.inputs.ct import load_ct

    ct = load_ct(sample("example_ct_sm"))
    flipped = B.flip_storage(ct)
    assert flipped.shape == ct.shape and B.flip_storage(flipped).same_grid(ct)
    a, b = ct.to_sitk(), flipped.to_sitk()
    nz, ny, nx = ct.shape
    for k, j, i in [(0, 0, 0), (3, 10, 20), (nz - 1, ny - 1, nx - 1)]:
        p = a.TransformIndexToPhysicalPoint((i, j, k))
        q = b.TransformIndexToPhysicalPoint((nx - 1 - i, ny - 1 - j, k))
        assert np.allclose(p, q, atol=1e-4)
        assert ct.array[k, j, i] == flipped.array[k, ny - 1 - j, nx - 1 - i]
    assert np.allclose(np.asarray(flipped.direction).reshape(3, 3)[:, :2], -np.asarray(ct.direction).reshape(3, 3)[:, :2])


def test_every_finding_type_gets_the_same_share_of_cases():
    from collections import Counter

    organs = list(B.DEFAULT_ORGANS)
    rng = np.random.default_rng(0)
    per_finding, n = Counter(), 2000
    for _ in range(n):
        plan = B.plan_findings(organs, rng, finding_rate=0.3, max_per_organ=2)
        assert max(Counter(o for o, _ in plan).values(), default=0) <= 2
        assert all(B.lesions.insertable(f, o) for o, f in plan)
        stages = [B._STAGE[B.lesions.INSERTIONS[f][0]] for _, f in plan]
        assert stages == sorted(stages)  # enlargement before density before foci before fluid
        per_finding.update(f for _, f in plan)
    assert set(per_finding) == set(B.FINDINGS)
    assert all(abs(c / n - 0.3) < 0.04 for c in per_finding.values()), per_finding


def test_worker_processes_build_the_same_shards(tiny, tmp_path):
    root, cfg, _, _ = tiny
    manifest = B.build_benchmark(tmp_path, cfg, workers=2)
    assert manifest.read_text() == (root / "manifest.jsonl").read_text()  # same cases, same order
    for entry in B.read_manifest(root):
        a, b = _shard(root, entry), _shard(tmp_path, entry)
        assert torch.equal(a["images"], b["images"]) and torch.equal(a["whole_images"], b["whole_images"])
        assert torch.equal(a["lesion_maps"], b["lesion_maps"]) and torch.equal(a["organ_maps"], b["organ_maps"])
        assert a["sentences"] == b["sentences"] and a["records"] == b["records"]
    with pytest.raises(InputError, match="workers"):
        B.build_benchmark(tmp_path, cfg, workers=0)


def test_base_cache_gives_back_the_loaded_volumes(tiny, tmp_path):
    root, _, _, _ = tiny
    base = BB.base_by_name("example_ct_dicom")
    cached = BB.load_base(base, root / "bases")  # written by the build
    loaded = BB.load_base(base)
    for a, b in zip(cached, loaded):
        assert np.array_equal(a.array, b.array) and a.array.dtype == b.array.dtype and a.same_grid(b)
    old = tmp_path / "old" / f"{base.name}.npz"  # from another cache version: loaded anew, replaced
    old.parent.mkdir()
    np.savez_compressed(old, ct=np.zeros((1, 1, 1)), seg=np.zeros((1, 1, 1)), spacing=(1, 1, 1),
                        origin=(0, 0, 0), direction=np.eye(3).ravel(), source="x", seg_source="y",
                        version=BB.BASE_CACHE_VERSION - 1)
    fresh = BB.load_base(base, old.parent)
    assert np.array_equal(fresh[0].array, loaded[0].array)
    with np.load(old) as z:
        assert int(z["version"]) == BB.BASE_CACHE_VERSION and np.array_equal(z["seg"], loaded[1].array)
    broken = tmp_path / f"{base.name}.npz"
    broken.write_bytes(b"not a zip file")
    with pytest.raises(InputError, match="base-CT cache") as err:
        BB.load_base(base, tmp_path)
    assert str(broken) in str(err.value)


def test_slabs_run_from_a_few_slices_to_the_whole_scan(sample):
    ct, seg = BB.load_base(BB.base_by_name("example_ct"))
    lengths = []
    for seed in range(200):
        sub_ct, sub_seg, (z0, z1) = B._slab(ct, seg, np.random.default_rng(seed), organs=("liver", "spleen"))
        assert sub_ct.shape[0] == sub_seg.shape[0] == z1 - z0 and 0 <= z0 < z1 <= ct.shape[0]
        assert B._present(sub_seg.array, ("liver", "spleen"))  # never a slab without the organs asked for
        lengths.append(z1 - z0)
    assert min(lengths) <= 15 and max(lengths) >= ct.shape[0] - 10
    assert np.median(lengths) < 0.5 * ct.shape[0]  # log-uniform: short slabs are common


def test_input_errors_cross_process_boundaries_intact(tmp_path):
    """A worker's InputError reaches the caller with its file and problem (pools pickle it)."""
    import pickle

    err = pickle.loads(pickle.dumps(InputError(tmp_path / "bases" / "example_ct.npz", "not a readable file")))
    assert isinstance(err, InputError) and err.problem == "not a readable file"
    assert str(err) == f"{tmp_path / 'bases' / 'example_ct.npz'}: not a readable file"
    assert str(pickle.loads(pickle.dumps(InputError(None, "no path")))) == "no path"


def test_the_card_carries_the_per_fold_table_and_a_rerun_replaces_it():
    from TotalFMLib.training.folds import HELD_OUT_HEADING, card_with_folds

    card = "# Card\n\nintro\n\n## In-distribution figures\n\nx\n"
    first = "# Folds\n\ntext\n\n| held-out patient | a |\n|---|---|\n| A | 0.5 |\n\nPer finding:\n\n| f | A |\n"
    once = card_with_folds(card, first)
    assert once.index(HELD_OUT_HEADING) < once.index("## In-distribution figures")
    assert "| A | 0.5 |" in once and "Per finding" not in once and "| f | A |" not in once
    second = first.replace("| A | 0.5 |", "| A | 0.5 |\n| B | 0.7 |")
    twice = card_with_folds(once, second)
    assert twice.count(HELD_OUT_HEADING) == 1 and "| B | 0.7 |" in twice and twice.endswith("## In-distribution figures\n\nx\n")
    assert card_with_folds(card, "no table here") == card


def test_own_maps_hold_only_the_crops_own_findings(tiny):
    """A crop's own map is part of what it shows, and marks only findings its label names."""
    root, _, _, _ = tiny
    marked = 0
    for entry in B.read_manifest(root):
        shard = _shard(root, entry)
        own, shows = shard["own_maps"], shard["lesion_maps"]
        assert own.shape == shows.shape and bool((own <= shows).all())
        named = shard["label_matrix"].bool()
        assert not own.flatten(2).any(2)[~named].any()
        marked += int(own.flatten(2).any(2)[named].sum())
    assert marked > 0


def test_the_oracle_reads_own_maps_and_refuses_an_old_shard(tiny, tmp_path):
    from TotalFMLib.training.oracle import load_crops

    root, _, _, _ = tiny
    entries = B.read_manifest(root)
    data = load_crops(root, entries[:1])
    assert torch.equal(data["maps"], _shard(root, entries[0])["own_maps"])
    old = _shard(root, entries[0])
    del old["own_maps"]
    (tmp_path / "shards").mkdir()
    torch.save(old, tmp_path / entries[0]["shard"])
    with pytest.raises(InputError, match="has no own_maps .*rebuild the benchmark"):
        load_crops(tmp_path, entries[:1])


def test_neighbour_findings_count_every_scored_crop(tiny):
    from TotalFMLib.training.lesions import insertable
    from TotalFMLib.training.native_findings import benchmark_native
    from TotalFMLib.training.visibility import neighbour_findings

    root, _, _, _ = tiny
    counts = neighbour_findings(root)
    entries = B.read_manifest(root)
    native = benchmark_native(root, entries)
    # patient A's own kidney stones are n/a, not negatives: fewer stone crops than carriers
    everyone = sum(insertable("stone", o) for e in entries for o in e["organs"])
    assert counts["stone"]["positives"] + counts["stone"]["negatives"] < everyone
    for finding, c in counts.items():
        carrying = [(e, o) for e in entries for o in e["organs"]
                    if insertable(finding, o) and (o, finding) not in native.get(e["base"], ())]
        assert c["positives"] + c["negatives"] == len(carrying)
        assert c["positives"] == sum([o, finding] in e["findings"] for e, o in carrying)
        assert 0 <= c["negatives_showing_it"] <= c["negatives"]


def test_the_real_patients_own_stones_and_plaques_are_found_and_left_out(tiny):
    from TotalFMLib.training.native_findings import benchmark_native, dense_mm3
    from TotalFMLib.training.oracle import load_crops

    root, _, _, _ = tiny
    entries = B.read_manifest(root)
    # measured on the real base CTs: patient A's kidneys hold calcified foci (stones), B's and C's
    # aortas wall calcium; nothing else of what the benchmark inserts as dense foci
    assert benchmark_native(root, entries) == {
        "example_ct": {("kidney_left", "stone"), ("kidney_right", "stone")},
        "example_ct_dicom": {("aorta", "atherosclerosis")},
        "chest_ct": {("aorta", "atherosclerosis")}}
    data = load_crops(root, entries)
    k = B.FINDINGS.index("stone")
    for organ, patient, carriable in zip(data["organs"], data["patients"], data["carriable"][:, k].tolist()):
        if organ.startswith("kidney_"):
            assert carriable == (patient != "A")
    labels = np.zeros((4, 4, 4), dtype=np.int16)
    labels[1:3, 1:3, 1:3] = 7
    ct = np.where(labels == 7, 500.0, 0.0).astype(np.float32)   # an enhanced lumen is not calcium
    assert dense_mm3(ct, labels, (2.0, 2.0, 2.0), 7) == 0.0
    ct[1, 1, 1] = 900.0
    assert dense_mm3(ct, labels, (2.0, 2.0, 2.0), 7) == 8.0 and dense_mm3(ct, labels, (1, 1, 1), 3) == 0.0


def test_the_oracle_has_one_network_per_learnable_finding(tiny):
    from TotalFMLib.training.oracle import OracleConfig, load_crops, oracle_scores, train_oracle

    root, _, _, _ = tiny
    data = load_crops(root, B.read_manifest(root))
    oracle = train_oracle(data, OracleConfig(steps=2, batch_size=4, width=4))
    learnable = {f for k, f in enumerate(B.FINDINGS)
                 if 0 < int(data["labels"][data["carriable"][:, k], k].sum()) < int(data["carriable"][:, k].sum())}
    assert set(oracle.nets) == learnable and learnable
    scores = oracle_scores(oracle, data)
    assert scores.shape == (len(data["organs"]), len(B.FINDINGS))
    for k, f in enumerate(B.FINDINGS):
        assert np.isnan(scores[:, k]).all() != (f in learnable)
    assert ((scores[~np.isnan(scores)] >= 0) & (scores[~np.isnan(scores)] <= 1)).all()
    one, last = sorted(learnable)[0], max(learnable, key=B.FINDINGS.index)   # last: trained after others
    assert set(train_oracle(data, OracleConfig(steps=1, batch_size=4, width=4, findings=(one,))).nets) == {one}
    # each finding draws from its own random stream: trained alone, it is the same network
    assert len(learnable) > 1
    alone = train_oracle(data, OracleConfig(steps=2, batch_size=4, width=4, findings=(last,)))
    for a, b in zip(oracle.nets[last].state_dict().values(), alone.nets[last].state_dict().values()):
        assert torch.equal(a, b)
    # trained on the score read inside the organ: only the networks scored so change
    from TotalFMLib.training.oracle import INSIDE_FINDINGS

    inner = max((f for f in learnable if f in INSIDE_FINDINGS), key=B.FINDINGS.index)
    inside = train_oracle(data, OracleConfig(steps=2, batch_size=4, width=4, findings=(inner,), inside=(inner,),
                                             train_inside=True))
    outside = train_oracle(data, OracleConfig(steps=2, batch_size=4, width=4, findings=(inner,), inside=(),
                                              train_inside=True))
    assert inside.nets[inner].inside and not outside.nets[inner].inside
    assert not all(torch.equal(a, b) for a, b in zip(inside.nets[inner].state_dict().values(),
                                                     oracle.nets[inner].state_dict().values()))
    assert all(torch.equal(a, b) for a, b in zip(outside.nets[inner].state_dict().values(),
                                                 oracle.nets[inner].state_dict().values()))
    with pytest.raises(ValueError, match="not ascites"):     # fluid lies outside the organ
        train_oracle(data, OracleConfig(steps=1, batch_size=4, width=4, inside=("ascites",)))


def test_local_contrast_keeps_a_lesion_and_drops_the_organs_level():
    import torch

    from TotalFMLib.training.oracle import OracleConfig, local_contrast

    dim, bright = torch.full((1, 3, 32, 32, 12), 0.3), torch.full((1, 3, 32, 32, 12), 0.6)
    for crop in (dim, bright):
        crop[..., 14:18, 14:18, 5:7] -= 0.1                # the same small dark lesion in both organs
    a, b = local_contrast(dim, 9), local_contrast(bright, 9)
    assert torch.allclose(a, b, atol=1e-5)                  # the organ's level is gone ...
    assert a[0, 0, 16, 16, 6] < 0.45 and abs(a[0, 0, 2, 2, 2] - 0.5) < 1e-5   # ... the lesion stands out
    assert OracleConfig().local == ()                       # the oracle's default reading does not use it


def test_an_organ_scored_inside_itself_ignores_a_neighbour_that_looks_like_the_finding():
    import torch

    from TotalFMLib.training.oracle import INSIDE_FINDINGS, OracleConfig, organ_score

    logits = torch.full((3, 1, 4, 4, 2), -5.0)
    logits[:, 0, 3, 3, 1] = 4.0                    # a neighbour (outside the organ) looks like the finding
    logits[1, 0, 0, 0, 0] = 1.0                    # crop 1 shows a weaker one inside its organ
    organ = torch.zeros((3, 4, 4, 2), dtype=torch.uint8)
    organ[:2, :2, :2] = 40                         # the organ touches these cells (a sliver is enough) ...
    # ... and crop 2's map shows no organ cell at all: it keeps the whole crop's maximum
    assert organ_score(logits, organ, inside=False).tolist() == [4.0, 4.0, 4.0]
    assert organ_score(logits, organ, inside=True).tolist() == [-5.0, 1.0, 4.0]
    assert "hypodense lesion" in INSIDE_FINDINGS and "stone" in INSIDE_FINDINGS
    assert "ascites" not in INSIDE_FINDINGS and "pleural effusion" not in INSIDE_FINDINGS   # fluid lies outside
    assert OracleConfig().inside == ("hypodense lesion", "renal hypodensities")   # the hypodense findings


def test_the_oracle_auroc_counts_only_the_organs_that_carry_the_finding():
    import torch

    from TotalFMLib.training.oracle import finding_auroc

    data = {"carriable": torch.tensor([[True], [True], [True], [True], [False]]),
            "labels": torch.tensor([[False], [True], [False], [True], [True]]),
            "organs": ["liver", "liver", "spleen", "spleen", "aorta"]}
    scores = np.array([[0.1], [0.9], [0.8], [0.2], [0.0]])   # right in the liver, wrong in the spleen
    assert finding_auroc(data, scores, 0, "liver") == 1.0
    assert finding_auroc(data, scores, 0, "spleen") == 0.0
    assert finding_auroc(data, scores, 0) == 0.75              # the aorta cannot carry it: counted, 0.5
    assert finding_auroc(data, scores, 0, "aorta") is None     # nothing to rank
    data["labels"][:, 0] = True
    assert finding_auroc(data, scores, 0) is None              # every crop shows it


def test_an_instance_normalised_oracle_scores_each_crop_on_its_own():
    import torch

    from TotalFMLib.training.oracle import OracleNet

    torch.manual_seed(0)
    crops, where = torch.rand(4, 3, 16, 16, 8), torch.full((4, 4, 4, 2), 255, dtype=torch.uint8)
    organ = torch.zeros(4, dtype=torch.long)
    for norm, alone in (("instance", True), ("batch", False)):
        net = OracleNet(["liver"], width=4, norm=norm).train()   # training mode: batch statistics
        together = net(crops, organ, where)[:1]
        crops_brighter = crops.clone()
        crops_brighter[1:] += 0.3                                # the other crops of the batch change ...
        # ... which moves the first crop's output only where statistics are pooled over the batch
        assert torch.allclose(net(crops_brighter, organ, where)[:1], together, atol=1e-5) == alone
    with pytest.raises(ValueError, match="norm must be one of batch, instance"):
        OracleNet(["liver"], norm="layer")


def test_the_oracle_by_organ_command_prints_both_readings(tiny, training_dir, capsys, tmp_path):
    import runpy

    root, _, _, _ = tiny
    main = runpy.run_path(str(training_dir / "oracle_by_organ.py"))["main"]

    def rows(norm=False):  # (trained on, reading, steps, finding) of each printed row, the norm first if asked
        cells = [line.split(" | ") for line in capsys.readouterr().out.splitlines()
                 if any(f" | {reading} | " in line for reading in ("absolute", "organ-relative", "local contrast"))]
        return [(c[1],) * norm + (c[0].lstrip("| "), c[2], c[4], c[5]) for c in cells]

    assert main(["--benchmark", str(root), "--holdout", "C", "--findings", "hepatomegaly,stone", "--steps", "2"]) == 0
    assert rows() == [("A+B", "absolute", "2", "hepatomegaly"), ("A+B", "absolute", "2", "stone"),
                      ("A+B", "organ-relative", "2", "hepatomegaly"), ("A+B", "organ-relative", "2", "stone")]
    args = ["--benchmark", str(root), "--holdout", "C", "--findings", "stone,hypodense lesion", "--steps", "2,3"]
    assert main(args + ["--reading", "default"]) == 0   # the oracle's own reading: only the hypodense organ-relative
    assert [r[1:] for r in rows()] == [
        ("absolute", "2", "stone"), ("organ-relative", "2", "hypodense lesion"),
        ("absolute", "3", "stone"), ("organ-relative", "3", "hypodense lesion")]
    # trained again without one training patient, side by side
    assert main(["--benchmark", str(root), "--holdout", "C", "--findings", "hepatomegaly", "--steps", "2",
                 "--reading", "default", "--also-without", "B"]) == 0
    assert [r[0] for r in rows()] == ["A+B", "A"]
    # each normalisation of the networks in turn
    assert main(["--benchmark", str(root), "--holdout", "C", "--findings", "hepatomegaly", "--steps", "2",
                 "--reading", "default", "--norm", "batch,instance"]) == 0
    assert [r[:2] for r in rows(norm=True)] == [("batch", "A+B"), ("instance", "A+B")]
    # every finding read as local contrast
    assert main(["--benchmark", str(root), "--holdout", "C", "--findings", "hepatomegaly,stone", "--steps", "2",
                 "--reading", "local"]) == 0
    assert [r[1:] for r in rows()] == [("local contrast", "2", "hepatomegaly"), ("local contrast", "2", "stone")]
    # several seeds: each, then their scores averaged
    assert main(["--benchmark", str(root), "--holdout", "C", "--findings", "hepatomegaly", "--steps", "2",
                 "--reading", "default", "--seeds", "0,1"]) == 0
    seeds = [line.split(" | ")[3] for line in capsys.readouterr().out.splitlines() if "hepatomegaly" in line]
    assert seeds == ["0", "1", "mean of 0+1"]
    # one network read over the whole crop, then inside its organ (stones lie inside it, fluid does not)
    assert main(["--benchmark", str(root), "--holdout", "C", "--findings", "ascites,stone", "--steps", "2",
                 "--reading", "default", "--score", "whole,inside"]) == 0
    scored = [tuple(line.split(" | ")[5:7]) for line in capsys.readouterr().out.splitlines() if " | 2 | " in line]
    assert scored == [("ascites", "whole crop"), ("stone", "whole crop"),
                      ("ascites", "whole crop"), ("stone", "inside the organ")]
    # by default as the oracle reads it: the hypodense findings inside their organ, the rest over the crop
    assert main(["--benchmark", str(root), "--holdout", "C", "--findings", "hypodense lesion,stone", "--steps", "2",
                 "--reading", "default"]) == 0
    scored = [tuple(line.split(" | ")[5:7]) for line in capsys.readouterr().out.splitlines() if " | 2 | " in line]
    assert scored == [("hypodense lesion", "inside the organ"), ("stone", "whole crop")]
    with pytest.raises(SystemExit):
        main(["--benchmark", str(root), "--holdout", "C", "--findings", "stone", "--score", "outside"])
    assert "--score must name default, whole, inside" in capsys.readouterr().err
    # tested on the held-out patient's evaluation cases, or on all its cases (the tiny benchmark: one of each split)
    for test, cases in (("eval", 1), ("all", 2)):
        assert main(["--benchmark", str(root), "--holdout", "C", "--findings", "hepatomegaly", "--steps", "2",
                     "--reading", "default", "--test", test]) == 0
        assert f"tested on {cases} of its cases ({test})" in capsys.readouterr().out
    # ... or on another build's cases of that patient: here a copy whose manifest lacks C's training case
    import shutil
    other = tmp_path / "other_build"
    shutil.copytree(root, other)
    lines = (other / "manifest.jsonl").read_text().splitlines()
    kept = [x for x in lines if not (json.loads(x)["patient"] == "C" and json.loads(x)["split"] == "train")]
    assert len(kept) == len(lines) - 1
    (other / "manifest.jsonl").write_text("\n".join(kept) + "\n")
    held_out = {}
    for test_from in ("", str(root), str(other)):
        assert main(["--benchmark", str(root), "--holdout", "C", "--findings", "hepatomegaly", "--steps", "2",
                     "--reading", "default", "--test", "all"] + (["--test-from", test_from] if test_from else [])) == 0
        out = capsys.readouterr().out
        held_out[test_from] = [line.split(" | ")[8] for line in out.splitlines() if "hepatomegaly" in line]
        cases = 1 if test_from == str(other) else 2
        assert f"tested on {cases} of its cases{f' of {test_from}' if test_from else ''} (all)" in out
    assert held_out[""] == held_out[str(root)]      # the same networks (seeded) on the same cases
    assert main(["--benchmark", str(root), "--holdout", "C", "--findings", "hepatomegaly",
                 "--test-from", str(tmp_path / "no_such_build")]) == 2
    assert capsys.readouterr().err.startswith("error:")
    with pytest.raises(SystemExit):
        main(["--benchmark", str(root), "--holdout", "C", "--findings", "hepatomegaly", "--norm", "layer"])
    assert "--norm must name batch, instance" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--benchmark", str(root), "--holdout", "C", "--findings", "hepatomegaly", "--also-without", "C"])
    assert "not a training patient of fold C" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(args[:-1] + ["0"])
    with pytest.raises(SystemExit):
        main(["--benchmark", str(root), "--holdout", "C", "--findings", "gout"])


def test_the_oracle_reads_lesions_against_their_organ_and_densities_as_they_are():
    import torch

    from TotalFMLib.training.oracle import OracleConfig, organ_relative, uses_relative

    images = torch.full((2, 3, 8, 8, 4), 0.2)
    images[0, :, :4] = 0.7               # the organ's half of the first crop is brighter ...
    images[0, :, 1, 1, 1] = 0.1          # ... with one dark voxel in it
    organ_map = torch.zeros(2, 2, 2, 1, dtype=torch.uint8)
    organ_map[0, 0] = 255                # the first crop's organ: x < 4 at the maps' 1/4 resolution
    out = organ_relative(images, organ_map)
    assert torch.allclose(out[0, :, :4].median(), torch.tensor(0.5), atol=1e-6)   # its organ's median moved to 0.5
    assert torch.allclose(out[0, :, 1, 1, 1], torch.tensor(-0.1), atol=1e-6)      # the contrast within it kept
    assert torch.allclose(out[0, :, 4:], torch.tensor(0.0), atol=1e-6)
    assert torch.equal(out[1], images[1])                              # no organ cell: left as it is
    cfg = OracleConfig()                # by default only the lesions darker than their organ
    assert uses_relative("hypodense lesion", cfg) and uses_relative("renal hypodensities", cfg)
    assert not uses_relative("stone", cfg) and not uses_relative("splenomegaly", cfg)
    assert not uses_relative("hepatic steatosis", cfg)                 # the organ's density is the finding
    assert not uses_relative("hypodense lesion", OracleConfig(relative=()))


def _fold(holdout, oracle_train, oracle_test):
    zero = {"mean": 0.5, "lo": 0.4, "hi": 0.6, "findings": {}}
    return {"holdout": holdout,
            "zero_shot": {"organ-separated / organ prompts": zero, "whole-volume baseline / organ prompts": zero},
            "probes": {k: {"mean": 0.5} for k in ("tokens", "untrained-tokens", "pixels")},
            "oracle": {"train": {"mean": 0.9, "findings": oracle_train},
                       "test": {"mean": 0.8, "findings": oracle_test}},
            "search": {"top1": 0.5, "nonsense_matches": 0, "nonsense_queries": 8},
            "normal": {"any_lesion": [], "organs": 9}}


def test_the_fold_table_marks_the_oracle_bar_per_finding(training_dir):
    import runpy

    table = runpy.run_path(str(training_dir / "evaluate_folds.py"))["table"]
    folds = [_fold("A", {"stone": 0.99, "ascites": 0.99, "hepatomegaly": 0.99}, {"stone": 0.95, "ascites": 0.95}),
             _fold("B", {"stone": 0.96, "ascites": 0.94, "hepatomegaly": 0.99},
                   {"ascites": 0.99, "hepatomegaly": 0.89})]
    rows = {line.split(" | ")[0].strip("| "): line for line in table(folds).splitlines() if line.startswith("| ")}
    assert rows["stone"].endswith("| 0.990 / 0.950 | 0.960 / n/a | yes |")  # n/a held out: nothing to miss
    assert rows["ascites"].endswith("| no |")  # 0.94 on B's training cases
    assert rows["hepatomegaly"].endswith("| no |")  # 0.89 held out on B
    assert rows["gallstones"].endswith("| n/a / n/a | n/a / n/a | no |")  # never learnt


def test_a_finished_fold_measures_its_oracle_again_when_it_was_measured_otherwise(tmp_path):
    import json

    from TotalFMLib.training import recipe
    from TotalFMLib.training.oracle import OracleConfig

    before = {"mean": 0.9, "findings": {"stone": 0.9}}
    # a fold written before the oracle's settings were stored with its figures
    (tmp_path / "fold.json").write_text(json.dumps({"holdout": "A", "oracle": {"train": before, "test": before}}))
    cfg, said = OracleConfig(steps=0), []      # 0 steps: the oracle is skipped, every figure n/a
    fold = recipe.evaluate_fold(None, None, tmp_path / "bench", "A", tmp_path, cfg,
                                progress=lambda done, text: said.append(text))
    assert fold["oracle"]["train"]["mean"] is None and fold["oracle"]["config"]["steps"] == 0
    assert fold["oracle"]["config"]["relative"] == ["hypodense lesion", "renal hypodensities"]
    assert "other settings" in said[0]
    assert json.loads((tmp_path / "fold.json").read_text()) == fold
    said.clear()                               # measured with these settings: kept as it is
    assert recipe.evaluate_fold(None, None, tmp_path / "bench", "A", tmp_path, cfg,
                                progress=lambda done, text: said.append(text)) == fold
    assert not said


def test_the_folds_command_refuses_an_unknown_oracle_finding_before_any_work(training_dir, tmp_path, capsys):
    import runpy

    main = runpy.run_path(str(training_dir / "evaluate_folds.py"))["main"]
    with pytest.raises(SystemExit):
        main(["--benchmark", str(tmp_path / "none"), "--run", str(tmp_path / "run"),
              "--oracle-relative", "hypodense lesion,gout"])
    err = capsys.readouterr().err
    assert "--oracle-relative" in err and "'gout'" in err
    assert not (tmp_path / "run").exists()


def test_neighbour_findings_refuses_a_missing_benchmark_in_one_line(capsys, training_dir, tmp_path):
    import runpy

    main = runpy.run_path(str(training_dir / "neighbour_findings.py"))["main"]
    assert main(["--benchmark", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "none" in err and "\n" not in err


def test_base_organs_shows_patient_c_enhanced_beyond_what_the_builder_simulates(tiny, training_dir, capsys):
    import runpy

    root, _, _, _ = tiny
    main = runpy.run_path(str(training_dir / "base_organs.py"))["main"]
    assert main(["--benchmark", str(root)]) == 0
    rows = {tuple(c.strip() for c in line.split("|")[1:3]): [c.strip() for c in line.split("|")[3:-1]]
            for line in capsys.readouterr().out.splitlines()[2:]}
    # measured on the real CTs: C's kidneys are cut by its last slice and enhanced past A's
    # unenhanced kidneys by more than the simulated enhancement's +180 HU
    ml, cut, median, above, most, beyond = rows[("C", "kidney_left")]
    assert cut == "yes" and beyond == "yes" and most == "+180" and float(median) > 150
    assert rows[("A", "kidney_left")][1] == "no" and rows[("A", "kidney_left")][5] == "no"
    assert ("B", "kidney_left") not in rows                       # B's scan has no kidneys
    assert rows[("A", "urinary_bladder")][5] == "-"               # nothing simulated there


def test_base_organs_reads_the_reach_the_benchmark_was_built_with(tiny, training_dir, capsys, tmp_path):
    import json
    import runpy
    import shutil

    root, _, _, _ = tiny
    wide = tmp_path / "wide"
    shutil.copytree(root / "bases", wide / "bases")
    summary = json.loads((root / "benchmark.json").read_text())
    summary["config"]["enhancement_reach"] = 2.0
    (wide / "benchmark.json").write_text(json.dumps(summary))
    main = runpy.run_path(str(training_dir / "base_organs.py"))["main"]
    assert main(["--benchmark", str(wide)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "(reach 2)" in out[0]
    rows = {tuple(c.strip() for c in line.split("|")[1:3]): [c.strip() for c in line.split("|")[3:-1]]
            for line in out[2:]}
    assert rows[("C", "kidney_left")][4] == "+360"                # twice the +180 HU of reach 1
    (wide / "benchmark.json").write_text("{not json")
    assert main(["--benchmark", str(wide)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "benchmark.json" in err and "\n" not in err


def test_the_inserted_contrast_command_counts_every_focal_lesion_of_the_shards(tiny, training_dir, capsys, tmp_path):
    import runpy

    from TotalFMLib.training.lesions import HYPODENSE_FLOOR_HU

    root, _, _, _ = tiny
    main = runpy.run_path(str(training_dir / "inserted_contrast.py"))["main"]
    focal = [(e["patient"], r["finding"], r["organ"], r["params"]["contrast_hu"]) for e in B.read_manifest(root)
             for r in json.loads(_shard(root, e)["records"]) if "contrast_hu" in r["params"]]
    assert focal                                           # the tiny benchmark has some to count
    assert main(["--benchmark", str(root)]) == 0
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines()[2:]]
    assert sum(int(r[3]) for r in rows) == len(focal)      # every lesion in one row ...
    for r in rows:                                         # ... with its own patient's contrasts
        mine = [abs(c) for p, f, o, c in focal if (p, f, o) == (r[0].lstrip("| "), r[1], r[2])]
        assert r[4] == f"{np.median(mine):.0f} [{min(mine):.0f}, {max(mine):.0f}]"
        floor = r[5].rstrip(" |")
        hypodense = "hyperdense" not in r[1]
        assert floor == (str(sum(c <= HYPODENSE_FLOOR_HU for c in mine)) if hypodense else "-")
    assert main(["--benchmark", str(tmp_path)]) == 2       # no manifest: one line, no traceback
    assert capsys.readouterr().err.startswith("error: ")
