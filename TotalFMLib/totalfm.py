"""The one facade: load a model, encode organs and text, score, search.

    from TotalFMLib.totalfm import TotalFM
    model = TotalFM.load("demo")                        # or "official", or a checkpoint path
    emb = model.encode_image("ct.nii.gz", "seg.nii.gz")  # {organ: unit vector}
    rows = model.score(emb, case_id="case1")            # list[ScoreRow]
    hits = model.search(emb, "kidney stone")            # list[SearchHit]
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import numpy as np

from .atomic import file_sha256
from .config import ModelConfig
from .errors import ModelError
from .models import precision as modes
from .models.checkpoint import read_checkpoint
from .progress import Progress, sub_progress
from .runtime import pick_device

DEMO_MODEL = Path(__file__).parent / "data" / "demo_model.pt"
QUERY_CACHE_TEXTS = 20000  # search texts kept in memory (~20 MB at 256 dimensions)


def resolve_source(source: str | os.PathLike) -> Path:
    """"demo" -> the bundled file, "official" -> the released checkpoint (downloaded once), else a path."""
    if str(source) == "demo":
        if not DEMO_MODEL.is_file():
            raise ModelError(f"{DEMO_MODEL}: the bundled demo model is missing from this installation")
        return DEMO_MODEL
    if str(source) == "official":
        from .models.hub import official_checkpoint

        return official_checkpoint()
    return Path(source).expanduser()


class TotalFM:
    """A loaded model ready for inference (eval mode, inference mode, batched)."""

    def __init__(self, model, config: ModelConfig, checksum: str, path: Path, device, precision: str = "fp32",
                 cache_cases: int = 8, query_precision: str | None = None):
        self.model = model
        self.config = config
        self.checksum = checksum
        self.path = path
        self.device = device
        self.precision = precision
        from .models.embedding_cache import EmbeddingCache
        from .models.hub import model_cache_dir
        from .zeroshot.text_embeddings import TextEmbeddingCache

        cache_file = model_cache_dir() / "text_embeddings" / f"{checksum[:16]}.npz"
        self._text = TextEmbeddingCache(self._encode_text_now, cache_file)
        # search queries: a faster text path (models.precision.query_precision), in memory only
        self.query_precision = query_precision or modes.query_precision(device, model.text_tower)
        self._queries = TextEmbeddingCache(self._encode_queries_now, max_texts=QUERY_CACHE_TEXTS)
        self._query_tower = None  # the text tower as run for self.query_precision, built on first use
        self.image_cache = EmbeddingCache(cache_cases)  # per-case organ embeddings (embedding_cache)
        self._image_encoder = None  # the image tower as run for self.precision, built on first use

    @property
    def model_id(self) -> str:
        return self.config.model_id

    # ---------------------------------------------------------------- loading
    @classmethod
    def load(cls, source: str | os.PathLike = "demo", device=None, precision: str = "fp32",
             cache_cases: int = 8, query_precision: str | None = None) -> "TotalFM":
        """``source``: "demo", "official" or a checkpoint path; ``precision``: "fp32"
        (reference), "bf16", "fp16" (CUDA) or "int8" (CPU) for the image encoder (see
        ``models.precision``); ``cache_cases``: how many cases' organ embeddings stay in
        memory; ``query_precision``: "fp32" or "bf16" for the search-query text encoder
        (default: bf16 where native). CPU threads are the entry point's choice
        (``runtime.setup``)."""
        from .models.totalfm_model import TotalFMModel

        device = pick_device(device)
        modes.check_precision(precision, device)
        path = resolve_source(source)
        state, config, meta = read_checkpoint(path, with_meta=True)
        # a sentence-transformers backbone is built from its own package; a ModernBERT one
        # only from its config, since the released checkpoint carries its weights
        model = TotalFMModel(config, load_text_backbone_weights=config.text.kind != "modernbert")
        # a file may leave out the frozen text backbone: those weights are its package's own
        model.load_checkpoint_state(state, path, text_backbone_optional=bool(meta.get("text_encoder_partial"))
                                    and config.text.kind != "modernbert")
        if query_precision is not None:
            modes.check_query_precision(query_precision, device, model.text_tower)
        model.to(device).eval()
        return cls(model, config, file_sha256(path), path, device, precision=precision, cache_cases=cache_cases,
                   query_precision=query_precision)

    # --------------------------------------------------------------- encoding
    def crops(self, ct, seg=None, organs=None, progress: Progress | None = None, cancel=None):
        """Organ crops (``crops.organ_crops.OrganCrops``) sized for this model, of a ``Case`` or
        of a CT and segmentation (paths or Volumes, which pass ``inputs.load_case`` first)."""
        from .crops.organ_crops import crop_case
        from .inputs.case import load_case

        return crop_case(load_case(ct, seg), organs, crop_size=self.config.crop_size, frames=self.config.frames,
                         progress=progress, cancel=cancel)

    def encode_crops(self, images, batch_size: int | None = None, progress: Progress | None = None,
                     cancel=None) -> np.ndarray:
        """(N, D) unit vectors of (N, 3, crop, crop, frames) crops, in ``self.precision``."""
        from .models.image_tower import encode_batches

        if batch_size is None:
            batch_size = 8 if self.device.type == "cpu" else 32
        if self._image_encoder is None:
            self._image_encoder = modes.prepare_image_tower(self.model.image_tower, self.precision)
        with modes.precision_context(self.precision, self.device):
            return encode_batches(self._image_encoder, images, batch_size=batch_size, device=self.device,
                                  progress=progress, cancel=cancel)

    def encode_image(self, ct, seg=None, organs=None, progress: Progress | None = None, cancel=None,
                     batch_size: int | None = None) -> dict[str, np.ndarray]:
        """{structure name: unit vector} for the requested organs present in the case: a
        ``Case``, or a CT and segmentation (paths or Volumes).

        A case encoded before (same inputs, organs and model; see ``models.embedding_cache``)
        is answered from ``self.image_cache`` without reading it again or running the encoder."""
        from .models.embedding_cache import case_key
        from .vocabulary import catalogue

        names = [o.name for o in catalogue.resolve(organs)]
        key = case_key(ct, seg, names, f"{self.checksum}:{self.precision}:{self.config.crop_size}:"
                                       f"{self.config.frames}")
        cached = self.image_cache.get(key)
        if cached is not None:
            if progress is not None:
                progress(1.0, "organ embeddings from the cache")
            return cached

        crops = self.crops(ct, seg, organs, progress=sub_progress(progress, 0.0, 0.3), cancel=cancel)
        vectors = self.encode_crops(crops.images, batch_size, progress=sub_progress(progress, 0.3, 1.0),
                                    cancel=cancel)
        embeddings = dict(zip(crops.organs, vectors))
        self.image_cache.put(key, embeddings)
        return embeddings

    def _encode_text_now(self, texts: list[str], tower=None) -> np.ndarray:
        import torch

        tower = self.model.text_tower if tower is None else tower
        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), 64):
                out.append(tower(texts[i:i + 64]).float().cpu().numpy())
        return np.concatenate(out)

    def _encode_queries_now(self, texts: list[str]) -> np.ndarray:
        if self._query_tower is None:
            self._query_tower = modes.prepare_text_tower(self.model.text_tower, self.query_precision)
        return self._encode_text_now(texts, self._query_tower)

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        """(N, D) unit vectors of search texts, in ``self.query_precision``, cached in memory."""
        return self._queries.encode(list(texts))

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """(N, D) unit vectors, cached per model (see ``zeroshot.text_embeddings``)."""
        return self._text.encode(list(texts))

    def encode_text(self, texts: str | Iterable[str]) -> dict[str, np.ndarray]:
        texts = [texts] if isinstance(texts, str) else list(texts)
        return dict(zip(texts, self.encode_texts(texts)))

    @staticmethod
    def similarity(a, b) -> np.ndarray | float:
        """Dot products of unit vectors: (D,)x(D,) -> float, (N,D)x(M,D) -> (N,M)."""
        a, b = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
        if a.ndim == 1 and b.ndim == 1:
            return float(a @ b)
        return np.atleast_2d(a) @ np.atleast_2d(b).T

    # -------------------------------------------------------- scores and search
    def score(self, embeddings: dict[str, np.ndarray], findings=None, organs=None,
              case_id: str = "case", style: str = "organ") -> list:
        """Score rows (``results.ScoreRow``) of organ embeddings; ``zeroshot.scoring.score_case``."""
        from .zeroshot.scoring import score_case

        return score_case(
            embeddings, self.encode_texts, organs=organs, findings=findings,
            calibration=self.config.calibration, logit_scale=self.config.logit_scale,
            case_id=case_id, model_id=self.model_id, model_checksum=self.checksum, style=style,
        )

    def search(self, embeddings: dict[str, np.ndarray], query: str, top_k: int | None = None,
               style: str | None = None, threshold: float | None = None) -> list:
        from .zeroshot.search import search

        if threshold is None:
            threshold = self.config.match_score  # the model's own, chosen on its calibration cases (or None)
        return search(embeddings, query, self.encode_queries, style=style or self.config.query_style,
                      top_k=top_k, threshold=threshold, encode_reference=self.encode_texts)
