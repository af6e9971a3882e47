"""The case library on real data: index the example CTs and the DICOM study, find a finding
across studies with the single-case search score, --like, a damaged study kept with its
reason, resume without duplicates, a `kill -9` mid-run losing nothing, two models kept apart,
no patient id in clear.
"""
from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dicom_study import PATIENT_ID, complete_series
from TotalFMLib.cli import main


@pytest.fixture(scope="module")
def root(tmp_path_factory, sample, dicom_base):
    """A folder of studies by the naming rule: two NIfTI CTs, a DICOM study, a damaged file."""
    root = tmp_path_factory.mktemp("studies")
    shutil.copy(sample("example_ct"), root / "abdomen.nii.gz")
    shutil.copy(sample("example_seg"), root / "abdomen_seg.nii.gz")
    (root / "more").mkdir()
    shutil.copy(sample("example_ct_sm"), root / "more" / "upper.nii.gz")
    shutil.copy(sample("example_seg_sm"), root / "more" / "upper_seg.nii.gz")
    complete_series(dicom_base[0], root / "dicom_study" / "series_2")
    shutil.copy(dicom_base[1], root / "dicom_study_seg.nii.gz")
    (root / "broken.nii.gz").write_bytes(b"not a CT at all")
    shutil.copy(sample("example_seg"), root / "broken_seg.nii.gz")
    return root


@pytest.fixture(scope="module")
def library(tmp_path_factory, root):
    lib = tmp_path_factory.mktemp("lib") / "lib"
    assert main(["index", str(root), "--library", str(lib), "-q"]) == 0
    return lib


def rows(lib, sql, *args):
    with sqlite3.connect(lib / "library.sqlite") as db:
        return db.execute(sql, args).fetchall()


def test_index_stores_every_study_and_keeps_the_damaged_one_with_its_reason(library, capsys):
    studies = dict(rows(library, "SELECT source, status FROM studies"))
    assert studies == {"abdomen.nii.gz": "done", "more/upper.nii.gz": "done", "dicom_study": "done",
                       "broken.nii.gz": "failed"}
    (reason,) = rows(library, "SELECT reason FROM studies WHERE status='failed'")[0]
    assert "broken.nii.gz" in reason and "\n" not in reason
    per_study = rows(library, "SELECT s.organs, COUNT(o.id) FROM studies s JOIN organs o ON o.study_id=s.id "
                              "GROUP BY s.id")
    assert all(declared == stored > 3 for declared, stored in per_study)
    uid, series, patient = rows(library, "SELECT study_uid, series_uid, patient_hash FROM studies "
                                         "WHERE source='dicom_study'")[0]
    assert uid.startswith("1.2.826.") and series and len(patient) == 64
    blob = (library / "library.sqlite").read_bytes() + b"".join(
        p.read_bytes() for p in library.glob("library.sqlite-*"))
    assert PATIENT_ID.encode() not in blob and b"Example^TotalSegmentator" not in blob


def test_find_ranks_with_the_single_case_search_score(library, root):
    from TotalFMLib.library.query import find_text
    from TotalFMLib.library.store import Library
    from TotalFMLib.totalfm import TotalFM

    model = TotalFM.load("demo")
    hits = find_text(Library(library), model, "kidney stone", top_k=200)
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))
    assert {h.study for h in hits} == {"abdomen.nii.gz", "more/upper.nii.gz", "dicom_study"}
    single = {h.organ: h.score for h in model.search(model.encode_image(root / "abdomen.nii.gz",
                                                                        root / "abdomen_seg.nii.gz"),
                                                     "kidney stone", top_k=200)}
    for h in hits:
        if h.study == "abdomen.nii.gz":
            assert h.score == pytest.approx(single[h.organ], abs=1e-4), h.organ
    kidneys = find_text(Library(library), model, "kidney stone", organs=["kidneys"], top_k=5)
    assert kidneys and {h.organ for h in kidneys} <= {"kidney_left", "kidney_right"}


def test_find_command_writes_the_cohort_and_like_finds_the_same_organ_elsewhere(library, tmp_path, capsys):
    import csv

    assert main(["find", "enlarged liver", "--library", str(library), "--top-k", "4", "--csv",
                 str(tmp_path / "cohort.csv"), "--json", str(tmp_path / "cohort.json"), "-q"]) == 0
    with open(tmp_path / "cohort.csv") as f:
        cohort = list(csv.DictReader(f))
    assert len(cohort) == 4 and cohort[0]["rank"] == "1" and cohort[0]["model_id"] == "totalfm-demo"
    capsys.readouterr()
    assert main(["find", "--like", "abdomen.nii.gz:liver", "--library", str(library), "-q"]) == 0
    out = capsys.readouterr().out.splitlines()[1:]
    assert out and all(line.split()[2] == "liver" for line in out)
    assert not any(line.endswith("abdomen.nii.gz") for line in out)


def test_rerun_indexes_nothing_twice(library, root, capsys):
    before = rows(library, "SELECT COUNT(*) FROM organs")[0][0]
    assert main(["index", str(root), "--library", str(library)]) == 0
    assert "4 studies found, 4 already in the library, 0 indexed" in capsys.readouterr().err
    assert rows(library, "SELECT COUNT(*) FROM organs")[0][0] == before


def test_two_models_in_one_library_are_kept_apart(library, root, tiny_checkpoint, tmp_path, capsys):
    lib = tmp_path / "two"
    shutil.copytree(library, lib)
    assert main(["index", str(root), "--library", str(lib), "--model", str(tiny_checkpoint), "-q"]) == 0
    models = {m: n for m, _, n in rows(lib, "SELECT s.model_id, s.model_checksum, COUNT(*) FROM organs o JOIN studies s "
                                            "ON s.id=o.study_id GROUP BY s.model_checksum")}
    assert set(models) == {"totalfm-demo", "tiny-test"}
    capsys.readouterr()
    for model, width in (("demo", None), (str(tiny_checkpoint), 24)):
        assert main(["find", "kidney stone", "--library", str(lib), "--model", model, "--top-k", "100", "--json",
                     str(tmp_path / "hits.json"), "-q"]) == 0
        import json

        hits = json.loads((tmp_path / "hits.json").read_text())
        assert {h["model_id"] for h in hits} == {"tiny-test" if width else "totalfm-demo"}


def test_kill_9_mid_run_loses_nothing_and_a_rerun_completes_without_duplicates(tmp_path, sample):
    root = tmp_path / "many"
    root.mkdir()
    for i in range(6):
        shutil.copy(sample("example_ct_sm"), root / f"case{i}.nii.gz")
        shutil.copy(sample("example_seg_sm"), root / f"case{i}_seg.nii.gz")
    lib = tmp_path / "lib"
    cmd = [sys.executable, "-m", "TotalFMLib", "index", str(root), "--library", str(lib), "-q"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    done = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if (lib / "library.sqlite").exists():
            try:
                done = rows(lib, "SELECT COUNT(*) FROM studies")[0][0]
            except sqlite3.OperationalError:
                done = 0
            if done >= 2:
                break
        time.sleep(0.05)
    assert proc.poll() is None, "the indexer finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = rows(lib, "SELECT source, organs FROM studies")
    assert 2 <= len(kept) < 6
    for source, organs in kept:  # every study written is whole
        assert rows(lib, "SELECT COUNT(*) FROM organs o JOIN studies s ON s.id=o.study_id WHERE s.source=?",
                    source)[0][0] == organs > 0
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sources = [r[0] for r in rows(lib, "SELECT source FROM studies")]
    assert sorted(sources) == [f"case{i}.nii.gz" for i in range(6)]
    organs = rows(lib, "SELECT COUNT(*), COUNT(DISTINCT study_id || organ) FROM organs")[0]
    assert organs[0] == organs[1] == 6 * kept[0][1]


def test_parallel_workers_give_the_same_library(root, library, tmp_path):
    lib = tmp_path / "par"
    assert main(["index", str(root), "--library", str(lib), "--workers", "2", "-q"]) == 0
    q = "SELECT s.source, o.organ, o.embedding FROM organs o JOIN studies s ON s.id=o.study_id ORDER BY 1, 2"
    one, two = rows(library, q), rows(lib, q)
    assert [r[:2] for r in one] == [r[:2] for r in two]
    for a, b in zip(one, two):
        np.testing.assert_allclose(np.frombuffer(a[2], "<f4"), np.frombuffer(b[2], "<f4"), atol=1e-5)


def test_approximate_search_of_a_large_group_agrees_with_exact():
    """The HNSW path (groups over EXACT_LIMIT rows) on rows shaped like the demo model's (the
    benchmark's generator): its top 10 are the exact top 10 for at least 95 % of the rows."""
    pytest.importorskip("usearch")
    import importlib.util

    from TotalFMLib.library import ann

    spec = importlib.util.spec_from_file_location("library_bench", Path(__file__).parent / "benchmarks" /
                                                  "library_bench.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    matrix, mean, sd, make_queries = bench.synthetic(ann.EXACT_LIMIT, 64)
    rows = ann.augmented(matrix, mean, sd)
    index = ann.GroupIndex.build(rows)
    assert len(index.bands) == ann.EXACT_LIMIT // ann.MIN_BAND_ROWS > 1
    recalls = []
    for q in make_queries(30):
        exact = set(np.argsort(-(rows[:, :-1] @ q + rows[:, -1]))[:10].tolist())
        found = index.search(q, 10)
        best = found[np.argsort(-(rows[found, :-1] @ q + rows[found, -1]))[:10]]
        recalls.append(len(exact & set(best.tolist())) / 10)
    assert np.mean(recalls) >= 0.95, np.mean(recalls)


def test_indexing_on_a_dask_cluster_of_two_workers_on_loopback(root, library, tmp_path):
    """Dask's own local cluster (two worker processes on 127.0.0.1) indexes the studies; this
    process writes the library, which equals the one indexed here in one process."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        lib = tmp_path / "dask"
        assert main(["index", str(root), "--library", str(lib), "--scheduler", cluster.scheduler_address, "-q"]) == 0

        def models_loaded():
            from TotalFMLib.library import indexer

            return len(indexer._worker_models)

        loaded = client.run(models_loaded)
    assert len(loaded) == 2 and sum(loaded.values()) >= 1
    q = "SELECT s.source, s.status, o.organ, o.embedding FROM studies s LEFT JOIN organs o ON o.study_id=s.id ORDER BY 1, 3"
    one, two = rows(library, q), rows(lib, q)
    assert [r[:3] for r in one] == [r[:3] for r in two]
    for a, b in zip(one, two):
        if a[3] is not None:
            np.testing.assert_allclose(np.frombuffer(a[3], "<f4"), np.frombuffer(b[3], "<f4"), atol=1e-5)


def test_stored_crop_geometry_is_the_crop_stages(library, root):
    import json

    from TotalFMLib.pipeline import open_case
    from TotalFMLib.totalfm import TotalFM

    stored = {organ: json.loads(bbox)["crop"] for organ, bbox in rows(
        library, "SELECT o.organ, o.bbox FROM organs o JOIN studies s ON s.id=o.study_id WHERE s.source=?",
        "abdomen.nii.gz")}
    crops = TotalFM.load("demo").crops(open_case(root / "abdomen.nii.gz", root / "abdomen_seg.nii.gz"),
                                       organs=sorted(stored))
    assert set(crops.boxes) == set(stored)
    for organ, box in crops.boxes.items():
        assert stored[organ]["voxels"] == [[b.start, b.stop] for b in box], organ
        assert stored[organ]["spacing_mm"] == pytest.approx(list(crops.spacing))


def test_the_graph_path_of_find_gives_the_exact_ranking_and_is_saved(library, monkeypatch):
    """With the exact-scan limit lowered, every organ group goes through its saved graphs; on
    groups this small they must give exactly the ranking of the exact scan."""
    pytest.importorskip("usearch")
    from TotalFMLib.library import ann
    from TotalFMLib.library.query import find_text
    from TotalFMLib.library.store import Library
    from TotalFMLib.totalfm import TotalFM

    model = TotalFM.load("demo")
    exact = find_text(Library(library), model, "liver lesion", top_k=15)
    monkeypatch.setattr(ann, "EXACT_LIMIT", 1)
    monkeypatch.setattr(ann, "MIN_BAND_ROWS", 1)
    for attempt in range(2):  # built and saved, then loaded
        graph = find_text(Library(library), model, "liver lesion", top_k=15)
        assert [(h.study, h.organ) for h in graph] == [(h.study, h.organ) for h in exact]
        assert [h.score for h in graph] == pytest.approx([h.score for h in exact], abs=1e-5)
        assert list((library / "ann").rglob("*.usearch"))
