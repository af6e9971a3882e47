"""The facade on the real example CT: load, encode organs, score, search; checkpoint errors."""
import numpy as np
import pytest
import torch

from TotalFMLib import TotalFM
from TotalFMLib.vocabulary.catalogue import resolve
from TotalFMLib.models.checkpoint import read_checkpoint, write_checkpoint
from TotalFMLib.errors import InputError, ModelError
from TotalFMLib.results import ANY_LESION
from TotalFMLib.zeroshot.search import MATCH_SCORE


@pytest.fixture(scope="module")
def embeddings(model, case):
    return model.encode_image(*case)


def test_checkpoint_without_the_frozen_backbone_is_small_and_loads(tiny_checkpoint, model):
    state, config, meta = read_checkpoint(tiny_checkpoint, with_meta=True)
    assert meta["text_encoder_partial"] is True
    assert not any(k.startswith("text_encoder.") for k in state)
    assert config.model_id == model.model_id == "tiny-test"
    assert len(model.checksum) == 64


def test_encode_image_gives_unit_vectors_for_present_default_organs(model, case, embeddings):
    ct, seg = case
    present = set(np.unique(seg.array).tolist())
    expected = [o.name for o in resolve(None) if o.label_id in present]
    assert list(embeddings) == expected and len(expected) > 10
    v = np.stack(list(embeddings.values()))
    assert v.shape == (len(expected), 24)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert np.linalg.matrix_rank(v) > 5  # different organs, different embeddings


def test_encode_image_accepts_paths_and_organ_groups(model, example_ct_path, example_seg_path, embeddings):
    kidneys = model.encode_image(example_ct_path, example_seg_path, organs=["kidneys"])
    assert list(kidneys) == ["kidney_right", "kidney_left"]
    np.testing.assert_allclose(kidneys["kidney_left"], embeddings["kidney_left"], atol=1e-5)


def test_progress_reaches_one(model, case):
    seen = []
    model.encode_image(*case, organs=["liver", "spleen"], progress=lambda f, m: seen.append(f))
    assert seen and seen[-1] == pytest.approx(1.0) and seen == sorted(seen)


def test_text_encoding_and_similarity(model):
    out = model.encode_text(["kidney stone", "Liver with metastasis."])
    a, b = out["kidney stone"], out["Liver with metastasis."]
    assert a.shape == (24,) and abs(np.linalg.norm(a) - 1) < 1e-5
    assert model.similarity(a, a) == pytest.approx(1.0, abs=1e-5)
    assert model.similarity(np.stack([a, b]), np.stack([a, b])).shape == (2, 2)


def test_score_rows_cover_every_organ_and_finding(model, embeddings):
    rows = model.score(embeddings, case_id="ex")
    lesion = [r for r in rows if r.finding == ANY_LESION]
    assert {r.organ for r in lesion} == set(embeddings)
    assert all(0 <= r.score <= 1 and r.flagged == (r.score >= r.threshold) for r in rows)
    assert {r.model_id for r in rows} == {"tiny-test"} and {r.case_id for r in rows} == {"ex"}
    assert len({r.finding for r in rows}) > 10


def test_rescoring_encodes_no_text(model, embeddings):
    model.score(embeddings)
    calls = []
    original = model._text._encode
    model._text._encode = lambda texts: calls.append(texts) or original(texts)
    try:
        model.score(embeddings)
    finally:
        model._text._encode = original
    assert calls == []


def test_search_ranks_every_organ(model, embeddings):
    hits = model.search(embeddings, "kidney stone")
    assert sorted(h.rank for h in hits) == list(range(1, len(embeddings) + 1))
    assert {h.organ for h in hits} == set(embeddings)
    # the match rule: among the first three and clearly above the organ's own baseline
    assert [h.matched for h in hits] == [h.rank <= 3 and h.score >= MATCH_SCORE for h in hits]
    assert [h.rank for h in model.search(embeddings, "kidney stone", threshold=-1e9) if h.matched] == [1, 2, 3]


def test_mismatched_checkpoint_lists_keys(tmp_path, tiny_checkpoint):
    state, config = read_checkpoint(tiny_checkpoint)
    state.pop("vit.pool.cross_attn.proj.weight")
    state["vit.extra.weight"] = torch.zeros(1)
    bad = write_checkpoint(tmp_path / "bad.pt", state, config)
    with pytest.raises(ModelError) as err:
        TotalFM.load(bad)
    assert "vit.pool.cross_attn.proj.weight" in str(err.value) and "vit.extra.weight" in str(err.value)


def test_unreadable_checkpoint(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="junk.pt: not a readable torch checkpoint"):
        TotalFM.load(junk)
    with pytest.raises(ModelError, match="no such checkpoint file"):
        TotalFM.load(tmp_path / "missing.pt")


def test_official_weights_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TOTALFM_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError) as err:
        TotalFM.load("official")
    assert "jichi-labo/TotalFM" in str(err.value) and "totalfm_en_checkpoint_best_loss.pt" in str(err.value)


def test_case_without_requested_organ(model, case):
    with pytest.raises(InputError, match="none of the requested organs"):
        model.encode_image(*case, organs=["brain"])
