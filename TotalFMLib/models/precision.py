"""Precision of inference: the image encoder's modes and the search-query text path.

Precision modes (``TotalFM.load(..., precision=...)``):

* ``"fp32"`` -- the reference; the default.
* ``"bf16"`` -- the image encoder under ``torch.autocast`` with bfloat16 (matmuls in bf16,
  softmax/norms in fp32). CPU: only where oneDNN has native bf16 (AVX512-BF16 / AMX);
  CUDA: where the GPU supports bf16. Elsewhere it is refused (it would be slower).
* ``"fp16"`` -- CUDA only: the image encoder under ``torch.autocast`` with float16.
* ``"int8"`` -- CPU only: dynamic int8 quantisation of the Linear layers of the image
  encoder's blocks and patch embedding (int8 weights, activations quantised on the fly,
  fbgemm/x86 kernels).

Each mode's agreement with fp32 (cosine of the organ embeddings) is measured by
Testing/benchmarks/run_benchmarks.py; only modes that reach 0.999 there should be used
as defaults.

Text: prompts for scoring are encoded in fp32 through the backbone's own forward (once
per model, then cached; see zeroshot.text_embeddings). Search queries are encoded while the user waits
(the organ-phrased style sends one string per organ, ~20), so ``TotalFM.search`` runs the
backbone on packed tokens (``models.packed_text``, no padding) with its matrix products in
bf16 where bf16 is native (``query_precision``, ``prepare_text_tower``): about 1.7x faster
on an AVX512-BF16 CPU, cosine to fp32 >= 0.9999 (benchmark (e) reports it).
"""
from __future__ import annotations

import contextlib

from ..errors import ModelError

PRECISIONS = ("fp32", "bf16", "fp16", "int8")


def bf16_supported(device) -> bool:
    """True where bf16 matmuls run natively (CPU: oneDNN with AVX512-BF16/AMX; CUDA: bf16 GPUs)."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    try:
        if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return False
    except (AttributeError, RuntimeError):
        return False
    # oneDNN also says yes on AVX-512 CPUs that only emulate bf16 (slower than fp32 there)
    native = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    native = [fn for fn in native if fn is not None]
    return not native or any(bool(fn()) for fn in native)


def check_precision(precision: str, device) -> str:
    """``precision`` if it can run on ``device``, else ModelError saying why."""
    import torch

    if precision not in PRECISIONS:
        raise ModelError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    device = torch.device(device)
    if precision == "bf16" and not bf16_supported(device):
        raise ModelError(f"precision 'bf16' needs native bfloat16 support, which this {device.type} lacks; "
                         "use 'fp32'")
    if precision == "fp16" and device.type != "cuda":
        raise ModelError("precision 'fp16' runs on CUDA GPUs only; use 'fp32' (or 'bf16' where native)")
    if precision == "int8" and device.type != "cpu":
        raise ModelError("precision 'int8' (dynamic quantisation) runs on the CPU only; use 'fp32' or 'bf16'")
    return precision


def prepare_image_tower(tower, precision: str):
    """The tower to run for ``precision``: itself (fp32, bf16, fp16) or an int8 dynamically
    quantised copy (int8). Call ``precision_context`` around its forward."""
    if precision != "int8":
        return tower
    import copy
    import warnings

    import torch
    from torch import nn

    engines = torch.backends.quantized.supported_engines
    if "x86" in engines:
        torch.backends.quantized.engine = "x86"
    elif "fbgemm" in engines:
        torch.backends.quantized.engine = "fbgemm"
    quantized = copy.deepcopy(tower).eval()
    vit = quantized.vit
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's deprecation notice for quantised tensors
        # the blocks and the patch embedding hold ~all of the FLOPs; the pooling's q/k/v
        # weights are read directly (F.linear) and stay fp32
        for name in ("transformer", "to_patch_embedding"):
            setattr(vit, name, torch.ao.quantization.quantize_dynamic(getattr(vit, name), {nn.Linear},
                                                                       dtype=torch.qint8))
    return quantized


def torch_dtype(precision: str):
    """The torch dtype of a floating-point precision name: "fp32", "bf16" or "fp16"."""
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def precision_context(precision: str, device):
    """Context to run the image encoder in: bf16/fp16 autocast for "bf16"/"fp16", nothing otherwise."""
    if precision not in ("bf16", "fp16"):
        return contextlib.nullcontext()
    import torch

    return torch.autocast(device_type=torch.device(device).type, dtype=torch_dtype(precision))


def _runs_packed(tower) -> bool:
    """Whether the text tower's backbone runs on packed tokens (``models.packed_text``)."""
    from .packed_text import PackedSentenceEncoder

    return PackedSentenceEncoder.supports(getattr(tower, "text_encoder", None))


def _check_query_tower(precision: str, packed: bool) -> None:
    """ModelError for an unknown query precision, or "bf16" with a backbone that does not run packed."""
    if precision not in ("fp32", "bf16"):
        raise ModelError(f"unknown query precision {precision!r}; use 'fp32' or 'bf16'")
    if precision != "fp32" and not packed:
        raise ModelError(f"query precision {precision!r} needs a BERT sentence-transformers text backbone; "
                         "this model's backbone runs in 'fp32' only")


def query_precision(device, tower) -> str:
    """Precision of the search-query text encoder: "bf16" where bf16 is native and the
    backbone runs packed (``prepare_text_tower``), else "fp32"."""
    return "bf16" if _runs_packed(tower) and bf16_supported(device) else "fp32"


def check_query_precision(precision: str, device, tower) -> str:
    """``precision`` if the search-query text encoder can run in it on ``device`` with this
    tower, else a ``ModelError`` saying why (at load, not at the first search)."""
    _check_query_tower(precision, _runs_packed(tower))
    return check_precision(precision, device)


def prepare_text_tower(tower, precision: str):
    """``texts -> (B, embed_dim)`` unit vectors for search queries: the backbone on packed
    tokens (``models.packed_text``: no padding; "bf16": its matrix products in bfloat16)
    and the tower's ``project``. Backbones it does not reproduce keep the tower itself (fp32)."""
    from .packed_text import PackedSentenceEncoder

    packed = _runs_packed(tower)
    _check_query_tower(precision, packed)
    if not packed:
        return tower
    packed = PackedSentenceEncoder(tower.text_encoder, torch_dtype(precision))
    return lambda texts: tower.project(packed(texts))
