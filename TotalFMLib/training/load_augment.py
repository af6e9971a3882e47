"""Augmentation of organ crops as the trainer reads them, with MONAI's transforms, so that every
epoch sees each crop differently: intensity (scale, shift and gamma of the windowed channels,
as scanners and reconstruction kernels differ), noise, resolution (smoothing), field of view
(zoom) and in-plane orientation (flips). The lesion maps (``benchmark_data.lesion_maps``, at
1/``MAP_STRIDE`` of the crop) go through the same flips and zoom at the crop's own resolution
(expanded, transformed, averaged back), so they keep marking the finding to the voxel: zooming
the coarse maps on their own grid would round their size and shift them by up to a cell.
Optionally (``AugmentConfig.shift_hu``, ``contrast``; off by default) the whole crop's HU are
shifted and its contrast changed (``jitter_hu``), as between patients' contrast phases.

A crop's draws depend on (seed, epoch, index) only, so a run is the same in any number of
loader workers. MONAI is imported when the augmentation is built (training only).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .crop_maps import MAP_STRIDE
from .train_config import AugmentConfig


class LoadAugment:
    """``augment({"image": (3, S, S, F), "maps": (K, s, s, f)}, index, epoch)`` -> the same keys,
    image float32 in [0, 1], maps uint8."""

    def __init__(self, cfg: AugmentConfig = AugmentConfig(), seed: int = 0):
        from monai.data import set_track_meta
        from monai.transforms import (Compose, RandAdjustContrastd, RandFlipd, RandGaussianNoised,
                                      RandGaussianSmoothd, RandScaleIntensityd, RandShiftIntensityd, RandZoomd)

        set_track_meta(False)  # plain tensors: MONAI's metadata tracking costs more than the transforms

        self.seed = seed
        self.shift_hu, self.contrast = cfg.shift_hu, cfg.contrast
        both, image = ["image", "maps"], ["image"]
        self.spatial = Compose([
            RandFlipd(both, prob=cfg.flip, spatial_axis=0, allow_missing_keys=True),
            RandFlipd(both, prob=cfg.flip, spatial_axis=1, allow_missing_keys=True),
            RandZoomd(both, prob=cfg.zoom, min_zoom=0.85, max_zoom=1.15, mode=("trilinear", "nearest"),
                      keep_size=True, allow_missing_keys=True),
        ])
        self.appearance = Compose([
            RandScaleIntensityd(image, factors=0.1, prob=cfg.intensity, channel_wise=True),
            RandShiftIntensityd(image, offsets=0.05, prob=cfg.intensity, channel_wise=True),
            RandAdjustContrastd(image, gamma=(0.8, 1.25), prob=cfg.gamma),
            RandGaussianSmoothd(image, sigma_x=(0.4, 1.0), sigma_y=(0.4, 1.0), sigma_z=(0.2, 0.6), prob=cfg.smooth),
            RandGaussianNoised(image, std=0.02, prob=cfg.noise),
        ])

    def __call__(self, item: dict, index: int, epoch: int) -> dict:
        seed = (self.seed * 1_000_003 + epoch * 7919 + index) % (2 ** 31)
        data = {"image": item["image"].float()}
        if "maps" in item:  # (K, s, s, f) -> (K, S, S, F), each cell repeated
            data["maps"] = F.interpolate(item["maps"][None].float(), scale_factor=MAP_STRIDE, mode="nearest")[0]
        self.spatial.set_random_state(seed)
        self.appearance.set_random_state(seed + 1)
        data = self.appearance(self.spatial(data))
        out = {"image": _plain(data["image"]).float().clamp_(0.0, 1.0)}
        if self.shift_hu or self.contrast:
            gen = torch.Generator().manual_seed(seed + 2)
            out["image"] = jitter_hu(out["image"][None], gen, self.shift_hu, self.contrast)[0]
        if "maps" in data:
            maps = F.avg_pool3d(_plain(data["maps"])[None].float(), MAP_STRIDE)[0]
            out["maps"] = maps.round().clamp_(0, 255).to(torch.uint8)
        return out


def _plain(tensor) -> torch.Tensor:
    """A plain tensor (MONAI hands back its MetaTensor subclass)."""
    return tensor.as_tensor() if hasattr(tensor, "as_tensor") else torch.as_tensor(tensor)


def jitter_hu(images: torch.Tensor, generator: torch.Generator, shift_hu: float, contrast: float) -> torch.Tensor:
    """A batch of windowed crops (B, 3, ...) in [0, 1] as if each crop's HU were shifted by up to
    +/- ``shift_hu`` and its contrast scaled by up to +/- ``contrast`` (a share) around each
    window's middle, clipped to [0, 1] again: patients differ by contrast phase and scanner far
    more than ``LoadAugment``'s gentle channel-wise changes cover (enhanced livers of the
    benchmark's patients lie 40-50 HU apart)."""
    from ..crops.ct_windows import WINDOWS

    shape = (images.shape[0],) + (1,) * (images.dim() - 1)
    width = torch.tensor([float(w) for _, _, w in WINDOWS]).view((1, -1) + (1,) * (images.dim() - 2))
    shift = (torch.rand(shape, generator=generator) * 2 - 1) * shift_hu
    scale = 1 + (torch.rand(shape, generator=generator) * 2 - 1) * contrast
    return ((images - 0.5) * scale + 0.5 + shift / width).clamp(0.0, 1.0)
