"""The linear probe finds a finding that is in the embeddings, and not one that is not."""
import numpy as np

from TotalFMLib.training.evaluate import CaseEmbeddings
from TotalFMLib.training.probe import fit_logistic, probe_table


def _cases(signal: float, seed: int):
    rng = np.random.default_rng(seed)
    cases = []
    for split, n in (("train", 60), ("val", 30), ("test", 30)):
        for k in range(n):
            labels = [["hypodense lesion"] if k % 3 == 0 else [], []]
            vectors = rng.normal(size=(2, 16))
            vectors[0, 3] += signal * bool(labels[0])  # the liver carries the finding in one direction
            cases.append(CaseEmbeddings(f"{split}{k}", split, ["liver", "spleen"], labels, vectors))
    return cases


def test_probe_separates_a_finding_that_is_encoded():
    rows = {r["finding"]: r for r in probe_table(_cases(signal=4.0, seed=0))}
    row = rows["hypodense lesion"]
    assert row["positives"] == 20 and row["train"] > 0.95 and row["val"] > 0.9 and row["test"] > 0.9
    assert set(rows) == {"hypodense lesion"}  # findings without training positives are left out


def test_probe_on_noise_does_not_generalise():
    row = probe_table(_cases(signal=0.0, seed=1))[0]
    assert abs(row["test"] - 0.5) < 0.25 and row["train"] > row["test"]  # it can only fit the noise


def test_fit_logistic_recovers_the_direction():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(400, 5))
    y = (x[:, 1] - x[:, 4] > 0).astype(int)
    score = fit_logistic(x, y)
    assert np.mean((score(x) > 0) == y) > 0.95


def test_feature_kinds_from_a_benchmark_cache(tmp_path, tiny_checkpoint):
    import pytest
    import torch

    from TotalFMLib.errors import InputError
    from TotalFMLib.totalfm import TotalFM
    from TotalFMLib.training.dataset import write_tiny_cache
    from TotalFMLib.training.probe import encode_features

    g = torch.Generator().manual_seed(0)
    cases = {f"c{k}": {"images": torch.rand(2, 3, 32, 32, 8, generator=g).half(), "organs": ["liver", "spleen"],
                       "sentences": [["Normal liver."], ["Normal spleen."]], "labels": [[], []]} for k in range(3)}
    root = write_tiny_cache(tmp_path, cases, {"c0": "train", "c1": "eval", "c2": "eval"},
                            patients={"c0": "P", "c1": "P", "c2": "Q"})  # holding Q out: c0 trains, c2 tests
    model = TotalFM.load(tiny_checkpoint)
    widths = {}
    for kind in ("embedding", "tokens", "untrained-tokens", "pixels"):
        got = encode_features(model, root, ("train", "test"), kind, holdout="Q")
        assert [c.split for c in got] == ["train", "test"] and all(c.vectors.shape[0] == 2 for c in got)
        assert np.isfinite(got[0].vectors).all()
        widths[kind] = got[0].vectors.shape[1]
    assert widths == {"embedding": 24, "tokens": 2 * 48, "untrained-tokens": 2 * 48, "pixels": 3 * 5}
    untrained = encode_features(model, root, ("train",), "untrained-tokens")[0].vectors
    with torch.no_grad():  # "train" the model's encoder: its tokens move, the untrained ones do not
        for param in model.model.image_tower.vit.transformer.parameters():
            param.add_(0.05)
    assert not np.allclose(encode_features(model, root, ("train",), "tokens")[0].vectors, untrained)
    assert np.allclose(encode_features(model, root, ("train",), "untrained-tokens")[0].vectors, untrained)
    with pytest.raises(InputError, match="unknown features"):
        encode_features(model, root, ("train",), "voxels")
    state = torch.random.get_rng_state()
    encode_features(model, root, ("train",), "untrained-tokens")
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's RNG is left alone
    small = write_tiny_cache(tmp_path / "small", {"s": {"images": torch.rand(1, 3, 24, 24, 8).half(),
                                                        "organs": ["liver"], "sentences": [["Normal liver."]],
                                                        "labels": [[]]}})
    with pytest.raises(InputError, match="the model expects") as err:
        encode_features(model, small, ("train",), "tokens")
    assert "s.pt" in str(err.value)
