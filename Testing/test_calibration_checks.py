"""The checks that set a model's operating points: thresholds raised above normal anatomy, and
the search match score chosen so that meaningless queries match nothing; both with the real
MiniLM encoder (organ "embeddings" are embeddings of organ descriptions, minilm_encoder.CASE)."""
import numpy as np
import pytest

from minilm_encoder import CASE, cached_encode, case_embeddings
from TotalFMLib.results import ANY_LESION
from TotalFMLib.training.evaluate import CaseEmbeddings
from TotalFMLib.training.normal_anatomy import NORMAL_MARGIN, above_normals, flags
from TotalFMLib.training.query_benchmark import (CALIBRATION_NONSENSE, NONSENSE, finding_query_ranks, match_score,
                                                 nonsense_matches)
from TotalFMLib.vocabulary.prompts import REFERENCE_QUERIES
from TotalFMLib.zeroshot.scoring import score_case, threshold_for
from TotalFMLib.zeroshot.search import MATCH_SCORE, search


@pytest.fixture(scope="module")
def normal_case():
    """Every organ described as normal: what an unmodified base CT should look like."""
    return case_embeddings({organ: f"Normal {organ.replace('_', ' ')}." for organ in CASE})


def test_thresholds_are_raised_just_above_normal_anatomy_and_no_further(normal_case):
    calibration = {"*": 0.0, ANY_LESION: {"*": 0.0, "liver": 0.99}, "stone": {"*": 0.0}}
    rows = score_case(normal_case, cached_encode, calibration=calibration)
    assert flags(rows)["flagged_rows"] > 0  # thresholds of 0 flag everything
    raised, count = above_normals(calibration, rows)
    assert count == sum(r.flagged for r in rows)
    after = flags(rows, raised)
    assert after["flagged_rows"] == 0 and after["any_lesion"] == [] and after["findings"] == {}
    for r in rows:
        t = threshold_for(raised, r.finding, r.organ)
        assert t > r.score and (t == threshold_for(calibration, r.finding, r.organ) or t == r.score + NORMAL_MARGIN)
    assert raised[ANY_LESION]["liver"] == 0.99  # already above: kept
    assert calibration == {"*": 0.0, ANY_LESION: {"*": 0.0, "liver": 0.99}, "stone": {"*": 0.0}}  # not modified
    # an abnormal organ still scores above its raised threshold on "stone" in this case
    abnormal = score_case(case_embeddings(), cached_encode, calibration=raised, organs=["kidney_left"],
                          findings=["stone"])
    assert [r.flagged for r in abnormal if r.finding == "stone"] == [True]


def test_a_normal_score_moved_by_another_machine_stays_unflagged(normal_case):
    calibration = {"*": 0.0}
    rows = score_case(normal_case, cached_encode, calibration=calibration)
    raised, _ = above_normals(calibration, rows)
    # the same normal CT scored elsewhere: every score 1e-6 higher (a fresh install moved them so)
    assert not [r for r in rows if r.score + 1e-6 >= threshold_for(raised, r.finding, r.organ)]
    # with no margin (the thresholds on the next float, as the demo's calibration was before), they flag
    tight, _ = above_normals(calibration, rows, margin=0.0)
    assert all(r.score + 1e-6 >= threshold_for(tight, r.finding, r.organ) for r in rows)


def _cases(split="val"):
    emb = case_embeddings()
    organs = list(emb)
    labels = [["stone"] if o == "kidney_left" else ["pleural effusion"] if o == "lung_lower_lobe_left" else []
              for o in organs]
    return [CaseEmbeddings("case-1", split, organs, labels, np.stack([emb[o] for o in organs]))]


def _search(emb, query, threshold=None):
    return search(emb, query, cached_encode, style="plain", threshold=threshold)


def test_match_score_is_the_lowest_that_lets_no_calibration_nonsense_match():
    cut = match_score(_cases(), _search, "val")
    assert cut >= MATCH_SCORE
    assert not nonsense_matches(_cases(), lambda e, q: _search(e, q, threshold=cut), "val")
    assert match_score(_cases(), _search, "val", floor=-100.0) < cut or cut == MATCH_SCORE
    highest = max(_search(dict(zip(CASE, cached_encode(list(CASE.values())))), q, threshold=float("inf"))[0].score
                  for q in CALIBRATION_NONSENSE)
    assert match_score(_cases(), _search, "val", floor=-100.0) == pytest.approx(np.nextafter(highest, np.inf))
    assert match_score(_cases(), _search, "test") == MATCH_SCORE  # no case of that split


def test_calibration_and_test_nonsense_and_reference_sentences_are_three_different_lists():
    assert not set(CALIBRATION_NONSENSE) & set(NONSENSE)
    assert not set(REFERENCE_QUERIES) & (set(NONSENSE) | set(CALIBRATION_NONSENSE))


def test_query_benchmark_ranks_the_carrying_organ_with_held_out_phrasings():
    rows = finding_query_ranks(_cases("test"), _search, "test")
    assert {r["organ"] for r in rows} == {"kidney_left", "lung_lower_lobe_left"} and len(rows) >= 4
    stone = [r["rank"] for r in rows if r["finding"] == "stone"]
    assert np.mean([rank == 1 for rank in stone]) >= 0.5, rows
