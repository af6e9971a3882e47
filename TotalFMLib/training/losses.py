"""Contrastive losses for unit-norm image and text embeddings.

Both take ``logit_scale`` as the *log* of the inverse temperature (the model's raw
parameter, initialised to log(1/0.07)); the logits are ``exp(logit_scale) * img @ txt.T``.

False negatives: two samples whose texts mean the same thing (identical sentence, or a
"normal" sentence of the same organ) are not negatives of each other. ``same`` is a
(B, B) boolean matrix, ``same[i, j]`` true when text j is a correct description of
image i; the diagonal is always taken as true. :func:`same_text_matrix` builds it from
integer text keys (see ``dataset.text_key``).

* CLIP (InfoNCE): multi-positive soft targets -- row i's target distribution is uniform
  over the j with ``same[i, j]``; the loss is the mean of the image->text and
  text->image cross-entropies. With ``same`` = identity this is the usual CLIP loss.
* SigLIP: every pair is a binary problem, label +1 where ``same`` else -1; the loss is
  ``-sum(log sigmoid(label * logit)) / B`` as in the SigLIP paper.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def same_text_matrix(keys: torch.Tensor) -> torch.Tensor:
    """(B,) integer text keys -> (B, B) bool, true where the keys are equal."""
    return keys[:, None] == keys[None, :]


def _positives(same: torch.Tensor | None, n: int, device) -> torch.Tensor:
    eye = torch.eye(n, dtype=torch.bool, device=device)
    if same is None:
        return eye
    if same.shape != (n, n):
        raise ValueError(f"same must be ({n}, {n}), got {tuple(same.shape)}")
    return same.to(device=device, dtype=torch.bool) | eye


def clip_loss(img: torch.Tensor, txt: torch.Tensor, logit_scale: torch.Tensor,
              targets_same: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE over a (B, B) logit matrix with multi-positive soft targets."""
    logits = logit_scale.exp() * img.float() @ txt.float().t()
    pos = _positives(targets_same, logits.shape[0], logits.device).float()
    t_img = pos / pos.sum(dim=1, keepdim=True)          # image i -> its texts
    t_txt = pos.t() / pos.t().sum(dim=1, keepdim=True)  # text j -> its images
    loss_i = -(t_img * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
    loss_t = -(t_txt * F.log_softmax(logits.t(), dim=1)).sum(dim=1).mean()
    return (loss_i + loss_t) / 2


def siglip_loss(img: torch.Tensor, txt: torch.Tensor, logit_scale: torch.Tensor,
                logit_bias: torch.Tensor, same: torch.Tensor | None = None) -> torch.Tensor:
    """Pairwise sigmoid loss; pairs marked in ``same`` (and the diagonal) are positives."""
    logits = logit_scale.exp() * img.float() @ txt.float().t() + logit_bias
    labels = _positives(same, logits.shape[0], logits.device).float() * 2 - 1
    return -F.logsigmoid(labels * logits).sum() / logits.shape[0]
