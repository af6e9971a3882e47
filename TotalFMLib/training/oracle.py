"""The supervised oracle: what a small model can learn from the benchmark's crops when it is told
everything (the finding labels and where each of the crop's own organ's findings lies, the
shards' ``own_maps``).

A fully convolutional 3D network maps a crop, with a fourth channel saying where the crop's
own organ is (``benchmark_data.organ_maps``), to one map per finding at the lesion maps'
resolution (1/4 of the crop), trained on the maps (binary cross-entropy per cell) and on the
organ labels (the map's maximum, per finding the organ can carry); an organ's score for a
finding is its map's maximum. It is the upper reference of every evaluation table: a finding
it cannot find in a held-out patient is not learnable from these crops, whatever the model.
The pixel-percentile probe (``probe.py``) is the lower reference.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .benchmark_data import FINDINGS
from .lesions import insertable


@dataclass(frozen=True)
class OracleConfig:
    width: int = 24
    steps: int = 1500
    batch_size: int = 16
    lr: float = 2e-3
    positive_share: float = 0.5   # share of each batch drawn among abnormal crops
    cover: float = 0.25           # a map cell fully shows the finding from this cover on (less: in proportion)
    seed: int = 0


class OracleNet(nn.Module):
    """Crop (B, 3, S, S, F) + organ index -> (B, K, S/4, S/4, F/4) finding logits."""

    def __init__(self, organs: list[str], width: int = 24, findings: int = len(FINDINGS)):
        super().__init__()
        self.organs = list(organs)
        w = width
        block = lambda i, o, **k: nn.Sequential(nn.Conv3d(i, o, 3, padding=k.get("d", 1), dilation=k.get("d", 1),
                                                          stride=k.get("s", 1)), nn.BatchNorm3d(o), nn.GELU())
        # a small receptive field (about 23 crop voxels): a finding is found where it is, not from the
        # patient's anatomy around it, which is what differs between patients
        self.features = nn.Sequential(block(4, w, s=2), block(w, 2 * w, s=2), block(2 * w, 2 * w),
                                      block(2 * w, 2 * w))
        self.organ = nn.Embedding(len(self.organs), 2 * w)
        self.out = nn.Conv3d(2 * w, findings, 1)

    def forward(self, images: torch.Tensor, organ_index: torch.Tensor, organ_map: torch.Tensor) -> torch.Tensor:
        """``organ_map``: (B, s, s, f) cover of the crop's organ at the maps' resolution (uint8)."""
        where = F.interpolate(organ_map[:, None].float() / 255.0, size=images.shape[2:], mode="nearest")
        h = self.features(torch.cat([images, where], 1)) + self.organ(organ_index)[:, :, None, None, None]
        return self.out(h)


def load_crops(root, entries: list[dict]) -> dict:
    """Every organ crop of ``entries``: images (float16), labels (N, K), maps (N, K, ...),
    carriable (N, K) bool (the organ can carry the finding), organs, cases, patients."""
    images, labels, maps, where, organs, cases, patients = [], [], [], [], [], [], []
    for e in entries:
        shard = torch.load(f"{root}/{e['shard']}", map_location="cpu", weights_only=True)
        if "own_maps" not in shard:
            raise InputError(f"{root}/{e['shard']}", "has no own_maps (built by an older version): rebuild the "
                                                    "benchmark with Training/build_benchmark.py")
        images.append(shard["images"])
        labels.append(shard["label_matrix"].bool())
        # the crop's own findings: a neighbour's lesion that shows in the crop is not this organ's
        # finding, and a target that says it is teaches the oracle to flag the wrong organ
        maps.append(shard["own_maps"])
        where.append(shard["organ_maps"])
        organs += list(shard["organs"])
        cases += [e["case_id"]] * len(shard["organs"])
        patients += [e["patient"]] * len(shard["organs"])
    carriable = torch.tensor([[insertable(f, o) for f in FINDINGS] for o in organs])
    return {"images": torch.cat(images), "labels": torch.cat(labels), "maps": torch.cat(maps),
            "organ_maps": torch.cat(where), "carriable": carriable, "organs": organs, "cases": cases, "patients": patients}


def train_oracle(data: dict, cfg: OracleConfig = OracleConfig(), progress=None) -> OracleNet:
    """Fit the oracle on crops from ``load_crops``."""
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    organs = sorted(set(data["organs"]))
    net = OracleNet(organs, cfg.width)
    index = torch.tensor([organs.index(o) for o in data["organs"]])
    abnormal = torch.nonzero(data["labels"].any(1)).flatten()
    normal = torch.nonzero(~data["labels"].any(1)).flatten()
    opt = torch.optim.AdamW(net.parameters(), cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    n_pos = int(round(cfg.batch_size * cfg.positive_share)) if len(abnormal) else 0
    start = time.time()
    net.train()
    for step in range(cfg.steps):
        pick = [abnormal[torch.randint(len(abnormal), (n_pos,), generator=gen)]] if n_pos else []
        pick.append(normal[torch.randint(len(normal), (cfg.batch_size - n_pos,), generator=gen)])
        rows = torch.cat(pick)
        x = data["images"][rows].float()
        target = (data["maps"][rows].float() / (255 * cfg.cover)).clamp(0, 1)
        where = data["organ_maps"][rows]
        for axis in (2, 3):  # in-plane flips: files store the patient's left on either side, front up or down
            if torch.rand(1, generator=gen) < 0.5:
                x, target, where = x.flip(axis), target.flip(axis), where.flip(axis - 1)
        logits = net(x, index[rows], where)
        dense = F.binary_cross_entropy_with_logits(logits, target, pos_weight=torch.tensor(20.0))
        carry = data["carriable"][rows].float()
        organ_logits = logits.amax(dim=(2, 3, 4))
        cls = (F.binary_cross_entropy_with_logits(organ_logits, data["labels"][rows].float(), reduction="none")
               * carry).sum() / carry.sum().clamp(min=1)
        loss = dense + cls
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if progress is not None and (step % 25 == 0 or step + 1 == cfg.steps):
            progress((step + 1) / cfg.steps, f"oracle step {step + 1}, loss {float(loss):.3f}, "
                                             f"{(time.time() - start) / (step + 1):.2f} s/step")
    return net.eval()


@torch.no_grad()
def oracle_scores(net: OracleNet, data: dict, batch_size: int = 32) -> np.ndarray:
    """(N, K) organ scores (the maximum of each finding's map)."""
    organs = [net.organs.index(o) if o in net.organs else 0 for o in data["organs"]]
    index = torch.tensor(organs)
    out = []
    for i in range(0, len(index), batch_size):
        logits = net(data["images"][i:i + batch_size].float(), index[i:i + batch_size],
                     data["organ_maps"][i:i + batch_size])
        out.append(torch.sigmoid(logits.amax(dim=(2, 3, 4))))
    return torch.cat(out).numpy() if out else np.zeros((0, len(FINDINGS)))
