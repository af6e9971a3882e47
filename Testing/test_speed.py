"""Speed features, for correctness only (no timings): precision modes' agreement with fp32 on
the conformance fixture, thread settings, the per-case embedding cache, and that text is
encoded only when new."""
import numpy as np
import pytest
import torch

from TotalFMLib import TotalFM
from TotalFMLib.inputs.fingerprint import input_key
from TotalFMLib.models.embedding_cache import EmbeddingCache, case_key
from TotalFMLib.errors import ModelError
from TotalFMLib.inputs.case import load_case
from TotalFMLib.models.checkpoint import load_image_state
from TotalFMLib.models.image_tower import build_image_tower
from TotalFMLib.models.precision import PRECISIONS, bf16_supported, check_precision, precision_context, prepare_image_tower, prepare_text_tower, torch_dtype
from TotalFMLib.runtime import physical_cores, set_cpu_threads
from TotalFMLib.inputs.volume import Volume


# ----------------------------------------------------------------- precision modes
@pytest.fixture(scope="module")
def fixture(tower_fixture):
    fx = tower_fixture
    tower = build_image_tower(fx["arch"], fx["embed_dim"])
    load_image_state(tower, fx["model_state_dict"])
    return tower.eval(), fx


def run(tower, precision, x):
    model = prepare_image_tower(tower, precision)
    with torch.inference_mode(), precision_context(precision, "cpu"):
        return model(x).float()


def test_fp32_is_the_reference(fixture):
    tower, fx = fixture
    assert prepare_image_tower(tower, "fp32") is tower
    torch.testing.assert_close(run(tower, "fp32", fx["input"]), fx["expected"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_faster_modes_agree_with_fp32(fixture, precision):
    tower, fx = fixture
    if precision == "bf16" and not bf16_supported("cpu"):
        pytest.skip("this CPU has no native bfloat16 (AVX512-BF16/AMX)")
    y = run(tower, precision, fx["input"])
    cosine = torch.nn.functional.cosine_similarity(y, fx["expected"])
    assert y.shape == fx["expected"].shape
    assert float(cosine.min()) >= 0.999, cosine
    assert not torch.equal(y, fx["expected"])  # it really ran in the other precision


def test_int8_leaves_the_fp32_tower_alone(fixture):
    tower, fx = fixture
    quantized = prepare_image_tower(tower, "int8")
    assert quantized is not tower
    assert "quantized" in type(quantized.vit.transformer.layers[0][1].fn.net[0]).__module__
    assert isinstance(tower.vit.transformer.layers[0][1].fn.net[0], torch.nn.Linear)
    torch.testing.assert_close(run(tower, "fp32", fx["input"]), fx["expected"], atol=1e-5, rtol=0)


# where speed's docstring says each precision runs (bf16: only where bfloat16 is native), and the float ones' dtypes
DOCUMENTED = {"fp32": ("cpu", "cuda"), "bf16": ("cpu", "cuda"), "fp16": ("cuda",), "int8": ("cpu",)}
FLOAT_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def test_precision_checks():
    assert set(PRECISIONS) == set(DOCUMENTED)
    for name in PRECISIONS:
        for device in DOCUMENTED[name]:
            if name != "bf16" or bf16_supported(device):
                assert check_precision(name, device) == name, (name, device)
    assert {name: torch_dtype(name) for name in FLOAT_DTYPES} == FLOAT_DTYPES
    assert check_precision("fp32", "cpu") == "fp32"
    with pytest.raises(ModelError, match="unknown precision 'fp8'"):
        check_precision("fp8", "cpu")
    with pytest.raises(ModelError, match="'fp16' runs on CUDA GPUs only"):
        check_precision("fp16", "cpu")
    assert check_precision("fp16", "cuda") == "fp16"
    with pytest.raises(ModelError, match="CPU only"):
        check_precision("int8", "cuda")
    if not bf16_supported("cpu"):
        with pytest.raises(ModelError, match="bfloat16"):
            check_precision("bf16", "cpu")


def test_threads_are_physical_cores(torch_threads):
    import os

    n = physical_cores()
    assert 1 <= n <= (os.cpu_count() or 1)
    assert set_cpu_threads() == n and torch.get_num_threads() == n
    assert set_cpu_threads(1) == 1 and torch.get_num_threads() == 1


# ----------------------------------------------------------------- embedding cache
def test_lru_keeps_the_most_recent_cases_and_returns_copies():
    cache = EmbeddingCache(max_cases=2)
    cache.put("a", {"liver": np.ones(3, np.float32)})
    cache.put("b", {"liver": np.zeros(3, np.float32)})
    got = cache.get("a")  # "a" becomes the most recent
    got["liver"][:] = 7
    assert cache.get("a")["liver"].tolist() == [1, 1, 1]
    cache.put("c", {"liver": np.ones(3, np.float32)})
    assert cache.get("b") is None and cache.get("a") is not None and len(cache) == 2


def test_keys_follow_content_and_geometry(tmp_path):
    a = Volume(np.zeros((2, 3, 4), np.float32), spacing=(1.0, 1.0, 2.0))
    same = Volume(np.zeros((2, 3, 4), np.float32), spacing=(1.0, 1.0, 2.0), source="elsewhere")
    assert input_key(a) == input_key(same)
    changed = a.with_array(a.array.copy())
    changed.array[1, 2, 3] = 1
    moved = Volume(a.array, spacing=(1.0, 1.0, 2.5))
    assert len({input_key(a), input_key(changed), input_key(moved)}) == 3
    f = tmp_path / "ct.nii.gz"
    f.write_bytes(b"x")
    before = input_key(f)
    f.write_bytes(b"xy")
    assert input_key(f) != before
    assert case_key(a, a, ["liver"], "m") != case_key(a, a, ["liver", "spleen"], "m") != case_key(a, a, ["liver"], "n")


def counting(model, monkeypatch):
    calls = []
    original = model.encode_crops
    monkeypatch.setattr(model, "encode_crops", lambda images, *a, **k: calls.append(len(images)) or
                        original(images, *a, **k))
    return calls


def test_second_encode_of_the_same_case_runs_no_encoder(model, example_ct_path, example_seg_path, monkeypatch):
    ct, seg = load_case(example_ct_path, example_seg_path)
    model.image_cache.clear()
    calls = counting(model, monkeypatch)
    first = model.encode_image(ct, seg, organs=["liver", "kidneys"])
    seen = []
    again = model.encode_image(Volume(ct.array.copy(), ct.spacing, ct.origin, ct.direction),
                               seg.with_array(seg.array.copy()), organs=["liver", "kidneys"],
                               progress=lambda f, m: seen.append(f))
    assert calls == [3] and seen == [1.0]
    assert again.keys() == first.keys()
    assert all(np.array_equal(again[k], first[k]) for k in first)
    # another organ list or an edited segmentation is a new request
    model.encode_image(ct, seg, organs=["liver"])
    edited = seg.with_array(seg.array.copy())
    edited.array[edited.array == 5] = 0  # liver removed
    assert "liver" not in model.encode_image(ct, edited, organs=["liver", "kidneys"])
    assert calls == [3, 1, 2]


def test_paths_are_cached_without_reading_the_files(model, example_ct_path, example_seg_path, monkeypatch):
    model.image_cache.clear()
    model.encode_image(example_ct_path, example_seg_path, organs=["spleen"])
    calls = counting(model, monkeypatch)
    monkeypatch.setattr("TotalFMLib.inputs.case.load_case", lambda *a: pytest.fail("files read again"))
    assert list(model.encode_image(example_ct_path, example_seg_path, organs=["spleen"])) == ["spleen"]
    assert calls == []


# ----------------------------------------------------------------- text side
def recording(model, monkeypatch, cache="_text"):
    calls = []
    cache = getattr(model, cache)
    original = cache._encode
    monkeypatch.setattr(cache, "_encode", lambda texts: calls.append(list(texts)) or original(texts))
    return calls


def test_query_encodes_only_its_own_strings(model, monkeypatch):
    embeddings = {name: v for name, v in zip(["liver", "spleen", "kidney_left", "kidney_right"],
                                             np.eye(4, 24, dtype=np.float32))}
    prompt_calls = recording(model, monkeypatch)
    calls = recording(model, monkeypatch, "_queries")
    model.search(embeddings, "a brand new query 1", style="plain")
    assert calls == [["a brand new query 1"]]
    model.search(embeddings, "a brand new query 2", style="organ")
    assert len(calls) == 2 and all("a brand new query 2" in t for t in calls[1])
    assert len(calls[1]) == len(set(calls[1])) <= 4  # one phrase per organ (kidneys may share one)
    model.search(embeddings, "a brand new query 2", style="organ")
    model.search(embeddings, "a brand new query 1", style="plain")
    assert len(calls) == 2  # repeated queries come from the cache
    # queries stay out of the prompt cache (and its file); the fixed baseline sentences go there,
    # once per style
    assert not any("brand new" in t for call in prompt_calls for t in call)
    assert len(prompt_calls) == 2 and all(len(c) == len(set(c)) for c in prompt_calls)


def test_query_path_agrees_with_the_prompt_path(model, tiny_checkpoint):
    texts = [f"{o}: kidney stone" for o in ("Liver", "Spleen", "Left kidney", "Portal vein and splenic vein")]
    reference = model._encode_text_now(texts)  # the fp32 tower's own forward, no cache
    assert model.query_precision == ("bf16" if bf16_supported("cpu") else "fp32")
    fast = model._encode_queries_now(texts)
    assert (fast * reference).sum(axis=1).min() >= 0.9999
    exact = TotalFM.load(tiny_checkpoint, device="cpu", query_precision="fp32")
    np.testing.assert_allclose(exact.encode_queries(texts), reference, rtol=0, atol=2e-6)
    with pytest.raises(ModelError, match="query precision"):
        TotalFM.load(tiny_checkpoint, device="cpu", query_precision="int8")


def test_prepare_text_tower(model):
    tower = model.model.text_tower
    texts = ["Liver: kidney stone", "Spleen: splenomegaly"]
    with torch.inference_mode():
        want = tower(texts)
        for precision in ("fp32", "bf16"):
            encode = prepare_text_tower(tower, precision)
            got = encode(texts)
            assert got.shape == want.shape and got.dtype == torch.float32
            assert float((got * want).sum(dim=1).min()) >= (0.9999999 if precision == "fp32" else 0.9999)
    assert {p.dtype for p in tower.parameters()} == {torch.float32}  # the tower itself is left as it was
    with pytest.raises(ModelError, match="unknown query precision"):
        prepare_text_tower(tower, "int8")


def test_text_cache_keeps_the_newest_texts():
    from TotalFMLib.zeroshot.text_embeddings import TextEmbeddingCache

    calls = []
    cache = TextEmbeddingCache(lambda texts: calls.append(list(texts)) or np.eye(len(texts), 4), max_texts=3)
    cache.encode(["a", "b"])
    cache.encode(["c", "d"])
    assert len(cache) == 3
    cache.encode(["d", "c", "b"])
    assert calls == [["a", "b"], ["c", "d"]]
    cache.encode(["a"])
    assert calls[-1] == ["a"]


def test_rescoring_a_cached_case_encodes_nothing(model, example_ct_path, example_seg_path, monkeypatch):
    embeddings = model.encode_image(example_ct_path, example_seg_path, organs=["liver", "spleen"])
    model.score(embeddings)
    text_calls = recording(model, monkeypatch)
    image_calls = counting(model, monkeypatch)
    again = model.encode_image(example_ct_path, example_seg_path, organs=["liver", "spleen"])
    rows = model.score(again)
    assert rows and text_calls == [] and image_calls == []
