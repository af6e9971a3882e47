"""The image encoder against the conformance fixture and the released checkpoint's key list."""
from pathlib import Path

import numpy as np
import pytest
import torch

from TotalFMLib.config import OFFICIAL_ARCH, OFFICIAL_EMBED_DIM
from TotalFMLib.errors import Cancelled, InputError, ModelError
from TotalFMLib.models.checkpoint import load_image_state, released_layout
from TotalFMLib.models import build_image_tower  # the public name (lazy: torch loads on use)
from TotalFMLib.models.image_tower import encode_batches

DATA = Path(__file__).parent / "Data"


def tiny_tower(fx, state=None, arch=None):
    tower = build_image_tower(arch or fx["arch"], fx["embed_dim"])
    load_image_state(tower, fx["model_state_dict"] if state is None else state)
    return tower.eval()


@torch.no_grad()
def test_fixture_loads_strictly_and_matches(tower_fixture):
    tower = tiny_tower(tower_fixture)
    y = tower(tower_fixture["input"])
    assert y.shape == tower_fixture["expected"].shape
    torch.testing.assert_close(y, tower_fixture["expected"], atol=1e-5, rtol=0)
    torch.testing.assert_close(y.norm(dim=-1), torch.ones(len(y)), atol=1e-5, rtol=0)


@torch.no_grad()
def test_state_without_k_bias_loads_as_zeros(tower_fixture):
    state = dict(tower_fixture["model_state_dict"])
    del state["vit.pool.cross_attn.k_bias"]
    tower = tiny_tower(tower_fixture, state)
    assert torch.all(tower.vit.pool.cross_attn.k_bias == 0)
    zeroed = dict(tower_fixture["model_state_dict"])
    zeroed["vit.pool.cross_attn.k_bias"] = torch.zeros_like(zeroed["vit.pool.cross_attn.k_bias"])
    torch.testing.assert_close(tower(tower_fixture["input"]),
                               tiny_tower(tower_fixture, zeroed)(tower_fixture["input"]))


@torch.no_grad()
def test_ddp_prefix_is_stripped(tower_fixture):
    state = {"module." + k: v for k, v in tower_fixture["model_state_dict"].items()}
    assert set(released_layout(state)) == set(tower_fixture["model_state_dict"])
    torch.testing.assert_close(tiny_tower(tower_fixture, state)(tower_fixture["input"]), tower_fixture["expected"],
                               atol=1e-5, rtol=0)


def test_mismatched_state_names_keys(tower_fixture):
    state = dict(tower_fixture["model_state_dict"])
    del state["vit.proj.1.weight"]
    state["vit.extra.weight"] = torch.zeros(3)
    with pytest.raises(ModelError) as err:
        tiny_tower(tower_fixture, state)
    assert "missing" in str(err.value) and "vit.proj.1.weight" in str(err.value)
    assert "unexpected" in str(err.value) and "vit.extra.weight" in str(err.value)
    bad = dict(tower_fixture["model_state_dict"], **{"image_proj.weight": torch.zeros(5, 5)})
    with pytest.raises(ModelError, match="image_proj.weight"):
        tiny_tower(tower_fixture, bad)


def test_official_arch_keys_shapes_and_size():
    expected = {}
    for line in (DATA / "totalfm_official_image_keys.txt").read_text().splitlines():
        name, shape = line.split(" ", 1)
        expected[name] = tuple(int(s) for s in shape.strip("()").split(",") if s.strip())
    with torch.device("meta"):
        tower = build_image_tower(OFFICIAL_ARCH, OFFICIAL_EMBED_DIM)
    got = {k: tuple(v.shape) for k, v in tower.state_dict().items()}
    assert got == expected
    n_params = sum(p.numel() for p in tower.parameters())
    assert abs(n_params / 1e6 - 131.8) <= 0.1, n_params


@torch.no_grad()
def test_smaller_grid_uses_linspace_rows(tower_fixture):
    # a model configured for twice the grid (4x4x4) on the fixture input (2x2x2 tokens)
    # must use position rows round(linspace(0, 3, 2)) = [0, 3] on every axis
    g = torch.Generator().manual_seed(0)
    big = dict(tower_fixture["model_state_dict"])
    for axis in ("row", "col", "dep"):
        big[f"vit.pos_embedding.{axis}_embed.weight"] = torch.randn(4, 16, generator=g)
    big_arch = dict(tower_fixture["arch"], image_size=64, frames=16)
    y_big = tiny_tower(tower_fixture, big, big_arch)(tower_fixture["input"])
    small = {k: (v[[0, 3]] if "pos_embedding" in k else v) for k, v in big.items()}
    y_ref = tiny_tower(tower_fixture, small)(tower_fixture["input"])
    torch.testing.assert_close(y_big, y_ref)
    assert not torch.allclose(y_ref, tower_fixture["expected"], atol=1e-3)  # the positions matter


@torch.no_grad()
def test_vit_helpers(tower_fixture):
    vit = tiny_tower(tower_fixture).vit
    x = tower_fixture["input"]
    assert vit.grid(x.shape) == (2, 2, 2)
    patches = vit.patchify(x)
    assert patches.shape == (2, 8, 3 * 16 * 16 * 4)
    # token (h=1, w=0, f=1) is index 1*4 + 0*2 + 1 = 5; feature (p1=3, p2=7, pf=2, c=1)
    feat = ((3 * 16 + 7) * 4 + 2) * 3 + 1
    assert patches[1, 5, feat] == x[1, 1, 16 + 3, 0 + 7, 4 + 2]
    tokens = vit.encode_tokens(x)
    assert tokens.shape == (2, 8, 48)
    keep = torch.stack([torch.randperm(8)[:5] for _ in range(2)])
    kept = vit.encode_tokens(x, keep)
    assert kept.shape == (2, 5, 48)
    # positions are added before selecting, so all-kept in another order permutes the output
    perm = torch.stack([torch.randperm(8) for _ in range(2)])
    torch.testing.assert_close(vit.encode_tokens(x, perm),
                               torch.gather(tokens, 1, perm[..., None].expand(-1, -1, 48)))
    assert vit.head(tokens).shape == (2, 32)


def test_encode_batches_matches_forward_and_cancels(tower_fixture):
    tower = tiny_tower(tower_fixture).train()
    calls = []
    emb = encode_batches(tower, tower_fixture["input"], batch_size=1, progress=lambda f, m: calls.append(f))
    assert emb.dtype == np.float32 and emb.shape == (2, 24)
    np.testing.assert_allclose(emb, tower_fixture["expected"].numpy(), atol=1e-5)
    assert calls == [0.5, 1.0]
    assert tower.training  # mode restored
    asked = []
    with pytest.raises(Cancelled):
        encode_batches(tower, tower_fixture["input"], batch_size=1, cancel=lambda: asked.append(1) or len(asked) > 1)
    assert len(asked) == 2


def test_bad_arch_and_bad_input_are_clear_errors(tower_fixture):
    with pytest.raises(ModelError, match="divisible"):
        build_image_tower(dict(tower_fixture["arch"], image_size=30), 24)
    with pytest.raises(ModelError, match="bogus"):
        build_image_tower(dict(tower_fixture["arch"], bogus=1), 24)
    with pytest.raises(InputError, match="patches"):
        tiny_tower(tower_fixture)(torch.zeros(1, 3, 32, 32, 6))
    with pytest.raises(InputError, match="exceeds"):
        tiny_tower(tower_fixture)(torch.zeros(1, 3, 64, 32, 8))
