"""The supervised oracle: what a small model can learn from the benchmark's crops when it is told
everything (the finding labels and where each of the crop's own organ's findings lies, the
shards' ``own_maps``).

One small fully convolutional 3D network per finding maps a crop, with a fourth channel
saying where the crop's own organ is (``benchmark_data.organ_maps``), to a map of that
finding at the lesion maps' resolution (1/4 of the crop). It is trained on the crops of the
organs that can carry the finding (and whose patient does not show it natively,
``native_findings``), half of each batch showing it, on the map (binary cross-entropy per
cell) and on the organ label (the map's maximum); an organ's score is the map's maximum. One
network for every finding at once, with batches drawn among all abnormal crops, fitted the
organ-sized findings but not the focal ones, even on its own training cases (0.64-0.79 for
hypodense and hyperdense lesions, renal hypodensities and stones).

For the hypodense findings (``RELATIVE_FINDINGS``), the crop's channels are first made
relative to the organ: each window minus its median over the organ's voxels
(``organ_relative``). The patients' organs lie tens of HU apart (contrast phase), and in
absolute HU a network trained on two patients flagged the third patient's normal parenchyma
rather than its lesions (hypodense lesions held out below chance). Read that way for every
finding but steatosis, the size and fluid findings and the stones lost on held-out patients
what the hypodense ones gained (splenomegaly 0.93 to 0.50 on patient C), so the others keep
absolute HU (``Training/BENCHMARK.md``, "What the oracle showed").

Two more choices exist for experiments; neither is the default
(``Training/results/experiment_oracle_focal_readings.md``):
- ``norm="instance"`` normalises each crop over itself instead of with the training batches'
  statistics. It did not help on fold A.
- ``local`` reads findings as local contrast (``local_contrast``). On fold A it helped
  hyperdense lesions and cost stones; on fold C it lost.

It is the upper reference of every evaluation table: a finding it cannot find in a held-out
patient is not learnt from these crops by a model told everything. The pixel-percentile
probe (``probe.py``) is the lower reference.
"""
from __future__ import annotations

import time
import zlib
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .benchmark_data import FINDINGS, load_shard
from .lesions import INSERTIONS, inside_organ
from .native_findings import benchmark_native, scored
from .load_augment import jitter_hu


# the findings whose network reads organ-relative channels: a lesion darker than its organ
RELATIVE_FINDINGS = tuple(f for f, (kind, _) in INSERTIONS.items() if kind == "hypodense")
# the findings the benchmark inserts inside the organ's mask, so an organ's score may be read
# inside the organ alone (``organ_score``)
INSIDE_FINDINGS = tuple(f for f in INSERTIONS if inside_organ(f))


@dataclass(frozen=True)
class OracleConfig:
    width: int = 24
    steps: int = 500              # per finding
    batch_size: int = 16          # half of it crops that show the finding
    lr: float = 1e-3
    cover: float = 0.25           # a map cell fully shows the finding from this cover on (less: in proportion)
    shift_hu: float = 0.0         # HU shift and contrast change of each training crop (load_augment.jitter_hu;
    contrast: float = 0.0         # 0: none; +/- 80 HU and 25 % cost the focal findings, Training/BENCHMARK.md)
    relative: tuple[str, ...] = RELATIVE_FINDINGS  # the findings read organ-relative (organ_relative)
    local: tuple[str, ...] = ()   # the findings read as local contrast (local_contrast; before organ-relative)
    local_box: int = 15           # local_contrast's box: voxels in-plane (a third of them across slices)
    findings: tuple[str, ...] = ()  # the findings to fit (default: every one the crops can teach)
    norm: str = "batch"           # the network's normalisation layers (NORMS)
    # the findings scored inside the organ only (organ_score; of INSIDE_FINDINGS): the hypodense ones, whose
    # neighbours (gallbladder, bowel, fluid) look like them; scoring only: every network is trained on the
    # whole crop's maximum unless train_inside
    inside: tuple[str, ...] = RELATIVE_FINDINGS
    train_inside: bool = False    # the training's organ loss reads the map as the score does (tried: no gain)
    seed: int = 0


def uses_relative(finding: str, cfg: OracleConfig) -> bool:
    """Whether the oracle's network for ``finding`` reads organ-relative channels."""
    return finding in cfg.relative


def organ_relative(images: torch.Tensor, organ_map: torch.Tensor) -> torch.Tensor:
    """Crops (B, 3, S, S, F) in [0, 1] with each channel's median over the crop's organ moved to
    0.5 (``organ_map``: (B, s, s, f) cover at the maps' resolution, uint8; a cell counts when the
    organ covers at least half of it). A crop without such a cell is left as it is."""
    inside = F.interpolate(organ_map[:, None].float(), size=images.shape[2:], mode="nearest") >= 128
    values = images.float().masked_fill(~inside, float("nan")).flatten(2)
    shift = (0.5 - values.nanmedian(dim=2).values).nan_to_num(0.0)  # (B, 3); NaN where no voxel is inside
    return images.float() + shift[:, :, None, None, None]


# "batch": statistics pooled over the training batches, kept for scoring; "instance": each crop's
# feature maps normalised over the crop itself (GroupNorm, one group per channel), so a held-out
# patient's levels and noise are not measured against the training patients'
NORMS = ("batch", "instance")


def norm_layer(kind: str, channels: int) -> nn.Module:
    if kind not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)}, not {kind!r}")
    return nn.BatchNorm3d(channels) if kind == "batch" else nn.GroupNorm(channels, channels)


def local_contrast(images: torch.Tensor, box: int) -> torch.Tensor:
    """Crops (B, 3, S, S, F) in [0, 1] minus their mean over a box around each voxel (``box``
    voxels in-plane, a third of that across the slices, which are three times as thick), plus
    0.5: what is left is what stands out from its surroundings, whatever the organ's level or
    the patient's contrast phase."""
    images = images.float()
    mean = images
    for axis, k in enumerate((box, box, max(1, box // 3) | 1)):  # a box mean is three 1D means, one per axis
        size = tuple(k if a == axis else 1 for a in range(3))
        mean = F.avg_pool3d(mean, size, stride=1, padding=tuple(n // 2 for n in size), count_include_pad=False)
    return images - mean + 0.5


def organ_score(logits: torch.Tensor, organ_map: torch.Tensor, inside: bool) -> torch.Tensor:
    """(B,) organ logits from a network's (B, 1, s, s, f) map: its maximum over the whole crop, or
    with ``inside`` over the cells the crop's own organ touches (``organ_map`` (B, s, s, f) > 0),
    so a neighbour that looks like the finding (the gallbladder beside a liver, for a hypodense
    lesion) does not count. A crop whose map shows no organ cell keeps the whole-crop maximum."""
    if inside:
        cells = (organ_map > 0)[:, None]
        cells = cells | ~cells.flatten(1).any(1)[:, None, None, None, None]
        logits = logits.masked_fill(~cells, float("-inf"))
    return logits.amax(dim=(1, 2, 3, 4))


class OracleNet(nn.Module):
    """Crop (B, 3, S, S, F) + organ index + organ map -> (B, K, S/4, S/4, F/4) finding logits."""

    def __init__(self, organs: list[str], width: int = 24, findings: int = 1, relative: bool = False,
                 norm: str = "batch", local: int = 0, inside: bool = False):
        """``local``: the box of ``local_contrast`` the crops are read through (0: none); ``inside``:
        the organ is scored inside its own cells (``organ_score``)."""
        super().__init__()
        self.organs = list(organs)
        self.relative = relative
        self.inside = inside
        self.local = local
        w = width
        block = lambda i, o, **k: nn.Sequential(nn.Conv3d(i, o, 3, padding=k.get("d", 1), dilation=k.get("d", 1),
                                                          stride=k.get("s", 1)), norm_layer(norm, o), nn.GELU())
        # a small receptive field (about 23 crop voxels): a finding is found where it is, not from the
        # patient's anatomy around it, which is what differs between patients
        self.features = nn.Sequential(block(4, w, s=2), block(w, 2 * w, s=2), block(2 * w, 2 * w),
                                      block(2 * w, 2 * w))
        self.organ = nn.Embedding(len(self.organs), 2 * w)
        self.out = nn.Conv3d(2 * w, findings, 1)

    def forward(self, images: torch.Tensor, organ_index: torch.Tensor, organ_map: torch.Tensor) -> torch.Tensor:
        """``organ_map``: (B, s, s, f) cover of the crop's organ at the maps' resolution (uint8)."""
        if self.local:
            images = local_contrast(images, self.local)
        if self.relative:
            images = organ_relative(images, organ_map)
        where = F.interpolate(organ_map[:, None].float() / 255.0, size=images.shape[2:], mode="nearest")
        h = self.features(torch.cat([images, where], 1)) + self.organ(organ_index)[:, :, None, None, None]
        return self.out(h)


class Oracle(nn.Module):
    """One ``OracleNet`` per finding that the training crops show (keyed by finding name)."""

    def __init__(self, organs: list[str]):
        super().__init__()
        self.organs = list(organs)
        self.nets = nn.ModuleDict()


def load_crops(root, entries: list[dict]) -> dict:
    """Every organ crop of ``entries``: images (float16), labels (N, K), maps (N, K, ...),
    carriable (N, K) bool (the organ can carry the finding and its patient does not show it
    natively, ``native_findings``), organs, cases, patients."""
    native = benchmark_native(root, entries)
    images, labels, maps, where, organs, cases, patients, carriable = [], [], [], [], [], [], [], []
    for e in entries:
        shard = load_shard(root, e)
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
        pairs = native.get(e.get("base"), frozenset())
        carriable += [[scored(f, o, pairs) for f in FINDINGS] for o in shard["organs"]]
    return {"images": torch.cat(images), "labels": torch.cat(labels), "maps": torch.cat(maps),
            "organ_maps": torch.cat(where), "carriable": torch.tensor(carriable), "organs": organs, "cases": cases,
            "patients": patients}


def finding_seed(seed: int, finding: str) -> int:
    """The random stream of one finding's network: its own, so a finding's figures do not depend
    on which other findings are trained in the same run (one shared stream made fold A's
    hyperdense lesions 0.77 in one run and 0.50 in another with the same seed)."""
    return (seed * 1_000_003 + zlib.crc32(finding.encode())) % 2**63


def train_oracle(data: dict, cfg: OracleConfig = OracleConfig(), progress=None) -> Oracle:
    """Fit one network per finding on crops from ``load_crops``; a finding without both
    showing and normal crops of organs that carry it gets none."""
    outside = sorted(set(cfg.inside) - set(INSIDE_FINDINGS))
    if outside:
        raise ValueError(f"only findings inserted inside their organ can be scored inside it "
                         f"({', '.join(INSIDE_FINDINGS)}), not {', '.join(outside)}")
    oracle = Oracle(sorted(set(data["organs"])))
    index = torch.tensor([oracle.organs.index(o) for o in data["organs"]])
    learnable = [k for k in range(len(FINDINGS)) if 0 < int(data["labels"][data["carriable"][:, k], k].sum())
                 < int(data["carriable"][:, k].sum()) and (not cfg.findings or FINDINGS[k] in cfg.findings)]
    n_pos = cfg.batch_size // 2
    start = time.time()
    for j, k in enumerate(learnable):
        carry = data["carriable"][:, k]
        shows = torch.nonzero(carry & data["labels"][:, k]).flatten()
        normal = torch.nonzero(carry & ~data["labels"][:, k]).flatten()
        seed = finding_seed(cfg.seed, FINDINGS[k])
        gen = torch.Generator().manual_seed(seed)   # its batches and flips
        torch.manual_seed(seed)                     # its initial weights
        net = OracleNet(oracle.organs, cfg.width, relative=uses_relative(FINDINGS[k], cfg), norm=cfg.norm,
                        local=cfg.local_box if FINDINGS[k] in cfg.local else 0, inside=FINDINGS[k] in cfg.inside)
        opt = torch.optim.AdamW(net.parameters(), cfg.lr, weight_decay=1e-4)
        net.train()
        for step in range(cfg.steps):
            rows = torch.cat([shows[torch.randint(len(shows), (n_pos,), generator=gen)],
                              normal[torch.randint(len(normal), (cfg.batch_size - n_pos,), generator=gen)]])
            x = data["images"][rows].float()
            target = (data["maps"][rows, k:k + 1].float() / (255 * cfg.cover)).clamp(0, 1)
            where = data["organ_maps"][rows]
            for axis in (2, 3):  # in-plane flips: files store the patient's left on either side, front up or down
                if torch.rand(1, generator=gen) < 0.5:
                    x, target, where = x.flip(axis), target.flip(axis), where.flip(axis - 1)
            if cfg.shift_hu or cfg.contrast:  # the patients' contrast phases differ more than their cases'
                x = jitter_hu(x, gen, cfg.shift_hu, cfg.contrast)
            logits = net(x, index[rows], where)
            dense = F.binary_cross_entropy_with_logits(logits, target, pos_weight=torch.tensor(20.0))
            # by default trained on the whole crop's maximum whatever ``inside`` says: it is a way to read
            # a trained network, so one network gives both readings (Training/oracle_by_organ.py --score)
            cls = F.binary_cross_entropy_with_logits(organ_score(logits, where, cfg.train_inside and net.inside),
                                                     data["labels"][rows, k].float())
            loss = dense + cls
            opt.zero_grad()
            loss.backward()
            opt.step()
            if progress is not None and (step % 50 == 0 or step + 1 == cfg.steps):
                done = (j + (step + 1) / cfg.steps) / len(learnable)
                progress(done, f"oracle: {FINDINGS[k]} step {step + 1}, loss {loss.item():.3f}, "
                               f"{time.time() - start:.0f} s")
        oracle.nets[FINDINGS[k]] = net.eval()
    return oracle.eval()


@torch.no_grad()
def oracle_scores(oracle: Oracle, data: dict, batch_size: int = 32,
                  inside: tuple[str, ...] | None = None) -> np.ndarray:
    """(N, K) organ scores (the maximum of each finding's map, ``organ_score``); NaN for findings
    the oracle has no network for. ``inside``: the findings whose map is read inside the organ,
    the others over the whole crop (None: as each network was built, ``OracleConfig.inside``)."""
    index = torch.tensor([oracle.organs.index(o) if o in oracle.organs else 0 for o in data["organs"]])
    out = np.full((len(index), len(FINDINGS)), np.nan)
    for name, net in oracle.nets.items():
        k = FINDINGS.index(name)
        for i in range(0, len(index), batch_size):
            where = data["organ_maps"][i:i + batch_size]
            logits = net(data["images"][i:i + batch_size].float(), index[i:i + batch_size], where)
            score = organ_score(logits, where, net.inside if inside is None else name in inside)
            out[i:i + batch_size, k] = torch.sigmoid(score).numpy()
    return out


def finding_auroc(data: dict, scores: np.ndarray, k: int, organ: str | None = None) -> float | None:
    """AUROC of finding ``k``'s ``scores`` (``oracle_scores``) over the crops of ``data``
    (``load_crops``) whose organ can carry it, or over one ``organ``'s; None where those crops
    do not both show it and not."""
    from . import metrics as M

    keep = data["carriable"][:, k].numpy()
    if organ is not None:
        keep = keep & (np.array(data["organs"]) == organ)
    y = data["labels"][:, k].numpy()[keep]
    return float(M.auroc(y, scores[keep, k])) if 0 < y.sum() < len(y) else None

