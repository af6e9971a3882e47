"""Zero-shot scoring and free-text search with the real MiniLM encoder and real text embeddings
of organ descriptions (see minilm_encoder.CASE: a stone in the left kidney, an effusion at the
left lower lung lobe, the other organs normal)."""
import math
from datetime import datetime, timezone

import numpy as np
import pytest

from minilm_encoder import CASE, cached_encode, case_embeddings, encode
from TotalFMLib.vocabulary import catalogue
from TotalFMLib.errors import InputError, ModelError
from TotalFMLib.vocabulary.findings import find, findings_for_organ, load_findings
from TotalFMLib.zeroshot.text_embeddings import encode_texts
from TotalFMLib.vocabulary.prompts import finding_prompts, lesion_prompts, query_text
from TotalFMLib.results import ANY_LESION, SCORE_COLUMNS
from TotalFMLib.zeroshot.scoring import DEFAULT_LOGIT_SCALE, DEFAULT_THRESHOLD, score_case
from TotalFMLib.zeroshot.search import MATCH_SCORE, preset_queries, search


@pytest.fixture(scope="module")
def emb():
    return case_embeddings()


def _by(rows, organ, finding):
    (row,) = [r for r in rows if r.organ == organ and r.finding == finding]
    return row


def test_stone_kidney_scores_higher_than_normal_organs(emb):
    rows = score_case(emb, cached_encode, findings=["nephrolithiasis"])
    stone = {r.organ: r.score for r in rows if r.finding == "stone"}
    assert set(stone) == {"kidney_left", "kidney_right", "urinary_bladder"}
    assert stone["kidney_left"] > stone["kidney_right"] and stone["kidney_left"] > stone["urinary_bladder"]
    lesion = {r.organ: r.score for r in rows if r.finding == ANY_LESION}
    assert set(lesion) == set(CASE)
    assert lesion["kidney_left"] > lesion["liver"]
    assert max(lesion, key=lesion.get) in ("kidney_left", "lung_lower_lobe_left")


def test_effusion_lobe_scores_higher_than_other_findings_there(emb):
    rows = score_case(emb, cached_encode, organs=["lungs"])
    assert {r.organ for r in rows} == {"lung_lower_lobe_left"}
    lobe = {r.finding: r.score for r in rows}
    assert max((f for f in lobe if f != ANY_LESION), key=lobe.get) == "pleural effusion"


def test_rows_follow_the_catalogue_and_the_formula(emb):
    rows = score_case(emb, cached_encode, organs=["liver", "kidney_left"], case_id="c1",
                      model_id="minilm-test", model_checksum="abc")
    for name in ("liver", "kidney_left"):
        expected = [ANY_LESION] + [f.finding for f in findings_for_organ(name)]
        assert [r.finding for r in rows if r.organ == name] == expected
    assert {r.created_at for r in rows} == {rows[0].created_at}
    created = datetime.fromisoformat(rows[0].created_at)
    assert created.utcoffset().total_seconds() == 0
    assert abs((datetime.now(timezone.utc) - created).total_seconds()) < 3600
    scale = math.exp(DEFAULT_LOGIT_SCALE)
    liver = catalogue.organ("liver")
    for r in rows:
        assert list(r.as_dict()) == list(SCORE_COLUMNS)
        assert (r.case_id, r.model_id, r.model_checksum) == ("c1", "minilm-test", "abc")
        assert r.label_id == catalogue.organ(r.organ).label_id
        assert r.snomed_code == catalogue.organ(r.organ).snomed_code
        assert r.score == pytest.approx(1 / (1 + math.exp(-scale * r.similarity)))
        assert r.threshold == DEFAULT_THRESHOLD and r.flagged == (r.score >= r.threshold)
    # the similarity is the ensemble mean difference of real cosine similarities
    pair = finding_prompts(liver, "hepatomegaly")
    sims = cached_encode(list(pair.abnormal + pair.normal)) @ emb["liver"]
    expected = sims[:len(pair.abnormal)].mean() - sims[len(pair.abnormal):].mean()
    assert _by(rows, "liver", "hepatomegaly").similarity == pytest.approx(expected, abs=1e-5)


def test_every_distinct_prompt_is_encoded_once_in_one_call(emb):
    calls = []

    def counting(texts):
        calls.append(list(texts))
        return encode(texts)

    rows = score_case(emb, counting, organs=["kidneys"], findings=["stone", "renal cyst"])
    assert len(calls) == 1 and len(calls[0]) == len(set(calls[0]))
    expected = set()
    for o in ("kidney_left", "kidney_right"):
        for pair in (lesion_prompts(o), finding_prompts(o, "stone"), finding_prompts(o, "renal cyst")):
            expected |= set(pair.abnormal + pair.normal)
    assert set(calls[0]) == expected
    assert "Left kidney with stone." in expected and "No stone in the left kidney." in expected
    assert len(rows) == 6


def test_encode_texts_encodes_a_repeated_text_once_and_keeps_the_order():
    calls = []

    def counting(texts):
        calls.append(list(texts))
        return encode(texts)

    texts = ["Liver: cyst", "Spleen: cyst", "Liver: cyst", "Liver: cyst"]
    vectors = encode_texts(counting, texts)
    assert calls == [["Liver: cyst", "Spleen: cyst"]]
    assert vectors.shape[0] == 4
    np.testing.assert_array_equal(vectors[0], vectors[2])
    np.testing.assert_array_equal(vectors[0], vectors[3])
    assert float(vectors[0] @ vectors[1]) < 0.9999
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=0, atol=1e-12)
    as_dict = encode_texts(lambda t: dict(zip(t, encode(t))), texts)  # the facade's mapping form
    np.testing.assert_allclose(as_dict, vectors, rtol=0, atol=1e-6)


def test_facade_style_mapping_encoder_gives_the_same_scores(emb):
    as_dict = lambda texts: dict(zip(texts, cached_encode(texts)))  # like TotalFM.encode_text
    a = score_case(emb, cached_encode, organs=["liver"], findings=["ascites"])
    b = score_case(emb, as_dict, organs=["liver"], findings=["ascites"])
    assert [r.score for r in a] == pytest.approx([r.score for r in b])


def test_calibration_thresholds_and_logit_scale(emb):
    calibration = {"stone": {"kidney_left": 0.0, "*": 1.0}, ANY_LESION: 1.0}
    rows = score_case(emb, cached_encode, organs=["kidneys"], findings=["stone"], calibration=calibration)
    left, right = _by(rows, "kidney_left", "stone"), _by(rows, "kidney_right", "stone")
    assert (left.threshold, left.flagged) == (0.0, True)
    assert (right.threshold, right.flagged) == (1.0, False)
    assert all(r.threshold == 1.0 and not r.flagged for r in rows if r.finding == ANY_LESION)
    sharp = score_case(emb, cached_encode, organs=["kidneys"], findings=["stone"], logit_scale=math.log(100))
    for r, s in zip(rows, sharp):
        assert s.similarity == pytest.approx(r.similarity)
        assert abs(s.score - 0.5) > abs(r.score - 0.5) and (s.score > 0.5) == (r.score > 0.5)
    with pytest.raises(ModelError, match="calibration"):
        score_case(emb, cached_encode, organs=["liver"], findings=["ascites"], calibration={"ascites": "high"})
    # a finding the calibration holds no threshold for takes its pooled "*" threshold
    pooled = score_case(emb, cached_encode, organs=["liver"], findings=["ascites"], calibration={"*": 0.9, "stone": 0.1})
    assert {r.threshold for r in pooled if r.finding == "ascites"} == {0.9}


def test_bad_scoring_inputs(emb):
    with pytest.raises(InputError, match="unknown organ 'gizzard'"):
        score_case({"gizzard": emb["liver"]}, cached_encode)
    with pytest.raises(InputError, match="unknown finding"):
        score_case(emb, cached_encode, findings=["unicorn"])
    with pytest.raises(InputError, match="none of the requested organs"):
        score_case(emb, cached_encode, organs=["brain"])
    with pytest.raises(InputError, match="not finite"):
        score_case({"liver": np.full(384, np.nan)}, cached_encode)
    with pytest.raises(ModelError, match="different models"):
        score_case({"liver": np.ones(16)}, cached_encode, findings=["ascites"])
    with pytest.raises(InputError, match="no organ embeddings"):
        score_case({}, cached_encode)


@pytest.mark.parametrize("style", ["organ", "plain"])
def test_search_kidney_stone_finds_the_left_kidney(emb, style):
    hits = search(emb, "kidney stone", cached_encode, style=style)
    assert [h.rank for h in hits] == list(range(1, len(CASE) + 1))
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert hits[0].organ == "kidney_left" and hits[0].matched
    assert [h.matched for h in hits] == [h.rank <= 3 and h.score >= MATCH_SCORE for h in hits]
    assert sum(h.matched for h in hits) < len(hits)


@pytest.mark.parametrize("style", ["organ", "plain"])
def test_search_pleural_effusion_finds_the_lung_lobe(emb, style):
    hits = search(emb, "pleural effusion", cached_encode, style=style)
    assert hits[0].organ == "lung_lower_lobe_left" and hits[0].matched
    assert [h.organ for h in hits if h.matched] == ["lung_lower_lobe_left"]


@pytest.mark.parametrize("style", ["organ", "plain"])
@pytest.mark.parametrize("query", ["asdf qwerty", "purple elephant dancing", "invoice due next friday"])
def test_a_query_that_means_nothing_matches_no_organ(emb, style, query):
    assert not any(h.matched for h in search(emb, query, cached_encode, style=style))


def test_each_organ_is_measured_against_its_own_baseline(emb):
    """The score is the organ's similarity above its similarity to sentences that carry no finding:
    an organ embedding that is close to everything (a hub) gains nothing from it."""
    from TotalFMLib.zeroshot.scoring import organ_matrix
    from TotalFMLib.zeroshot.search import baseline

    hub = dict(emb, liver=emb["liver"] + 3 * np.mean(cached_encode(["normal", "organ", "finding"]), axis=0))
    organs, matrix = organ_matrix(hub)
    mean, spread = baseline(matrix, organs, cached_encode, "organ")
    hits = {h.organ: h for h in search(hub, "kidney stone", cached_encode, style="organ")}
    liver = [o.name for o in organs].index("liver")
    assert hits["liver"].score == pytest.approx((hits["liver"].similarity - mean[liver]) / spread[liver])
    assert hits["kidney_left"].rank == 1 and not hits["liver"].matched


def test_organ_style_sends_one_text_per_organ_in_one_call(emb):
    calls = []

    def counting(texts):
        calls.append(list(texts))
        return encode(texts)

    search(emb, "hypodense lesion", counting, style="organ", encode_reference=cached_encode)
    assert len(calls) == 1
    assert sorted(calls[0]) == sorted(query_text(o, "hypodense lesion", "organ") for o in CASE)
    assert "Left kidney: hypodense lesion" in calls[0]
    calls.clear()
    search(emb, "hypodense lesion", counting, style="plain", encode_reference=cached_encode)
    assert calls == [["hypodense lesion"]]


def test_search_rule_parameters(emb):
    assert sum(h.matched for h in search(emb, "kidney stone", cached_encode, top_k=2, threshold=-100.0)) == 2
    assert not any(h.matched for h in search(emb, "kidney stone", cached_encode, threshold=1e9))
    (only,) = search({"kidney_left": emb["kidney_left"]}, "kidney stone", cached_encode)
    assert only.rank == 1 and only.matched
    for kwargs, problem in [(dict(query=" "), "empty"), (dict(style="fancy"), "query style"),
                            (dict(top_k=0), "top_k")]:
        args = dict(query="kidney stone", style="organ") | kwargs
        with pytest.raises(InputError, match=problem):
            search(emb, args.pop("query"), cached_encode, **args)


def test_preset_queries_come_from_the_catalogue():
    presets = preset_queries()
    assert presets == [f.finding for f in load_findings()]
    assert find(presets[0]).finding == presets[0] and "pleural effusion" in presets
