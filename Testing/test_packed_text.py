"""The packed-token query path reproduces the real MiniLM sentence-transformers backbone."""
from __future__ import annotations

import copy

import pytest
import torch

from TotalFMLib.config import TextConfig
from TotalFMLib.models.packed_text import PackedSentenceEncoder
from TotalFMLib.models.text_tower import build_text_tower, sentence_features

TEXTS = ["Liver: kidney stone", "Portal vein and splenic vein: hypodense liver lesion", "x",
         "Left kidney: kidney stone (organ 1732345678901234567)", "Spleen:   splenomegaly  ",
         "L5 vertebra: " + "very long query " * 30]  # longer than max_length: truncated


@pytest.fixture(scope="module")
def backbone():
    tower = build_text_tower(TextConfig(), embed_dim=16)
    return tower.text_encoder


def standard(st, texts):
    """The backbone's own forward on padded tokens."""
    with torch.inference_mode():
        return st(sentence_features(st, texts))["sentence_embedding"]


def test_fp32_equals_the_padded_forward(backbone):
    want = standard(backbone, TEXTS)
    with torch.inference_mode():
        got = PackedSentenceEncoder(backbone, torch.float32)(TEXTS)
    assert got.shape == want.shape == (len(TEXTS), 384)
    torch.testing.assert_close(got, want, rtol=0, atol=2e-6)
    with torch.inference_mode():
        one = PackedSentenceEncoder(backbone, torch.float32)(TEXTS[1:2])
    torch.testing.assert_close(one, want[1:2], rtol=0, atol=2e-6)  # alone = in a batch


def test_bf16_products_agree(backbone):
    want = standard(backbone, TEXTS)
    with torch.inference_mode():
        got = PackedSentenceEncoder(backbone, torch.bfloat16)(TEXTS)
    assert got.dtype == torch.float32
    assert float(torch.nn.functional.cosine_similarity(got, want).min()) >= 0.9999
    assert {p.dtype for p in backbone.parameters()} == {torch.float32}  # its own weights untouched


def test_only_backbones_it_reproduces(backbone):
    assert PackedSentenceEncoder.supports(backbone)
    other = copy.deepcopy(backbone)
    other[0].auto_model.config.hidden_act = "relu"
    assert not PackedSentenceEncoder.supports(other)
    cls_pooling = copy.deepcopy(backbone)
    cls_pooling[1].pooling_mode = "cls"
    assert not PackedSentenceEncoder.supports(cls_pooling)
    assert not PackedSentenceEncoder.supports(None)
    with pytest.raises(ValueError):
        PackedSentenceEncoder(other)
