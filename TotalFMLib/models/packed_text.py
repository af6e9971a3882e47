"""Sentence embeddings of a BERT sentence-transformers backbone (all-MiniLM-L6-v2) on packed
tokens: the search-query path.

An organ-phrased search sends one short string per organ (~20) through the backbone
while the user waits. Padded to the longest string, a quarter of those tokens are
padding. Here the strings' real tokens are stacked into one matrix for every product
(query, key and value in one), and only attention sees them padded, masked as in the
backbone's own forward. The tokens are the backbone's own (``preprocess``/``tokenize``
of the SentenceTransformer), with the padding then dropped.

``dtype`` of the matrix products (``models.precision`` picks it from a precision name):

* ``torch.float32``: the backbone's numbers up to float summation order;
* ``torch.bfloat16``: the matrix products in bfloat16 (weights kept in bf16, products accumulated
  in fp32 by oneDNN); the residual stream, norms, softmax, GELU and pooling stay fp32
  (cosine >= 0.9999 to fp32; the whole backbone in bf16 drifts to ~0.997).

``PackedSentenceEncoder.supports(st)`` tells whether a backbone is one this reproduces:
[Transformer(BertModel, absolute positions, exact GELU), Pooling(mean)(, Normalize)].
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .text_tower import sentence_features


def _pooling_is_mean(pooling) -> bool:
    mode = getattr(pooling, "pooling_mode", None)
    if isinstance(mode, str):
        return mode == "mean"
    flags = {k: v for k, v in vars(pooling).items() if k.startswith("pooling_mode_")}
    return bool(flags) and flags.get("pooling_mode_mean_tokens") is True and sum(bool(v) for v in flags.values()) == 1


class PackedSentenceEncoder:
    """``encoder(texts) -> (B, hidden) float32`` sentence embeddings of a SentenceTransformer."""

    def __init__(self, st, dtype: torch.dtype = torch.float32):
        if not self.supports(st):
            raise ValueError("not a BERT mean-pooling sentence-transformers model")
        if dtype not in (torch.float32, torch.bfloat16):
            raise ValueError(f"matrix products run in float32 or bfloat16, not {dtype}")
        self.st = st
        self.dtype = dtype
        self.normalize = len(st) == 3
        bert = st[0].auto_model
        self.embeddings = bert.embeddings
        self.heads = int(bert.config.num_attention_heads)
        cast = lambda t: t.detach().to(self.dtype)  # noqa: E731
        self.layers = []
        for layer in bert.encoder.layer:
            attention = layer.attention
            q, k, v = attention.self.query, attention.self.key, attention.self.value
            self.layers.append({
                "qkv": (cast(torch.cat([q.weight, k.weight, v.weight])), cast(torch.cat([q.bias, k.bias, v.bias]))),
                "out": (cast(attention.output.dense.weight), cast(attention.output.dense.bias)),
                "norm1": attention.output.LayerNorm,
                "up": (cast(layer.intermediate.dense.weight), cast(layer.intermediate.dense.bias)),
                "down": (cast(layer.output.dense.weight), cast(layer.output.dense.bias)),
                "norm2": layer.output.LayerNorm,
            })

    @staticmethod
    def supports(st) -> bool:
        try:
            modules = list(st)
            bert = modules[0].auto_model
            config = bert.config
        except (AttributeError, IndexError, TypeError):
            return False
        return (type(bert).__name__ == "BertModel" and 2 <= len(modules) <= 3
                and type(modules[1]).__name__ == "Pooling" and _pooling_is_mean(modules[1])
                and (len(modules) == 2 or type(modules[2]).__name__ == "Normalize")
                and getattr(config, "position_embedding_type", "absolute") == "absolute"
                and config.hidden_act == "gelu" and not getattr(config, "is_decoder", False))

    def _linear(self, x: torch.Tensor, weights) -> torch.Tensor:
        if self.dtype == torch.float32:
            return F.linear(x, *weights)
        return F.linear(x.to(self.dtype), *weights).float()

    def __call__(self, texts: list[str]) -> torch.Tensor:
        features = sentence_features(self.st, texts)
        device = self.embeddings.word_embeddings.weight.device
        mask = features["attention_mask"].bool()
        batch, length = mask.shape
        where = mask.reshape(-1).nonzero().squeeze(1).to(device)  # real tokens in the padded layout
        positions = torch.arange(length).expand(batch, length)[mask].to(device)
        types = features.get("token_type_ids", torch.zeros_like(features["input_ids"]))[mask].to(device)
        e = self.embeddings
        x = e.word_embeddings(features["input_ids"][mask].to(device)) + e.token_type_embeddings(types)
        x = e.LayerNorm(x + e.position_embeddings(positions))
        tokens, width = x.shape
        keep = mask.view(batch, 1, 1, length).to(device)
        for layer in self.layers:
            qkv = self._linear(x, layer["qkv"])
            padded = qkv.new_zeros(batch * length, 3 * width)
            padded[where] = qkv
            q, k, v = padded.view(batch, length, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
            context = context.transpose(1, 2).reshape(batch * length, width)[where]
            x = layer["norm1"](self._linear(context, layer["out"]) + x)
            x = layer["norm2"](self._linear(F.gelu(self._linear(x, layer["up"])), layer["down"]) + x)
        sentence = torch.arange(batch, device=device).repeat_interleave(mask.sum(1).to(device))
        pooled = torch.zeros(batch, width, device=device).index_add_(0, sentence, x)
        pooled = pooled / mask.sum(1, keepdim=True).to(device=device, dtype=pooled.dtype)
        return F.normalize(pooled, dim=-1) if self.normalize else pooled
