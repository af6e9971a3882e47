"""Where things lie in an organ crop: each inserted finding's mask and the organ's own mask taken
through the crop recipe (nearest-neighbour onto the recipe's grid, the organ's crop box, the
trilinear resize) and stored as the share of each ``MAP_STRIDE`` cell they cover (uint8, 255:
all). The benchmark stores them per crop; the token objective (``contrastive.token_targets``),
the load-time augmentation and the supervised oracle read them.
"""
from __future__ import annotations

import numpy as np
import torch

from ..inputs.volume import Volume
from ..vocabulary import catalogue
from .lesions import FINDINGS, LesionRecord

MAP_STRIDE = 4  # lesion and organ maps are stored at 1/4 of the crop's resolution on every axis


def crop_cover(grid: np.ndarray, box, crop_size: int, frames: int, stride: int, value: int | None = None
               ) -> torch.Tensor:
    """How much of each ``stride`` cell of an organ crop a 0/1 array on the recipe's grid covers
    (or, with ``value``, the voxels of ``grid`` equal to it): the crop box, the recipe's
    trilinear resize, then the cell means, as uint8 (255: all)."""
    import torch.nn.functional as F

    from ..crops.recipe import resize_channels

    part = grid[box] if value is None else grid[box] == value
    resized = resize_channels(part[None].astype(np.float32), crop_size, frames)
    cover = F.avg_pool3d(resized[None], stride)[0, 0]
    return torch.ceil(cover.clamp(0, 1) * 255).to(torch.uint8)  # any share at all is at least 1


def on_recipe_grid(ct: Volume, array: np.ndarray) -> np.ndarray:
    """An integer array on the CT's grid, nearest-neighbour onto the organ-crop recipe's grid."""
    from ..crops.recipe import resample_array, target_size, target_spacing

    spacing = target_spacing(ct.spacing)
    return resample_array(ct, array, spacing, target_size(ct.shape[::-1], ct.spacing, spacing), linear=False).array


def lesion_maps(ct: Volume, records: list[LesionRecord], crops, crop_size: int, frames: int,
                findings: tuple[str, ...] = FINDINGS, stride: int = MAP_STRIDE) -> tuple[torch.Tensor, torch.Tensor]:
    """Two (N, len(findings), S/stride, S/stride, F/stride) uint8 maps: how much of each cell of
    each organ crop shows each inserted finding (255: all of it). Each finding's mask goes
    through the crop recipe of the organs (nearest-neighbour onto the recipe's grid, the
    organ's crop box, the trilinear resize), then is averaged over ``stride``-sized cells.

    The first map holds every finding a crop shows, its neighbours' included (a liver lesion
    shows in the right kidney's crop); the second only the findings of the crop's own organ,
    which are the ones its label and report name."""
    side, depth = crop_size // stride, frames // stride
    shows = torch.zeros((len(crops.organs), len(findings), side, side, depth), dtype=torch.uint8)
    own = torch.zeros_like(shows)
    for record in records:
        k = findings.index(record.finding)
        grid = on_recipe_grid(ct, record.mask.astype(np.uint8))
        for i, organ in enumerate(crops.organs):
            if grid[crops.boxes[organ]].any():
                cover = crop_cover(grid, crops.boxes[organ], crop_size, frames, stride)
                shows[i, k] = torch.maximum(shows[i, k], cover)
                if organ == record.organ:
                    own[i, k] = torch.maximum(own[i, k], cover)
    return shows, own


def organ_maps(ct: Volume, labels: np.ndarray, crops, crop_size: int, frames: int,
               stride: int = MAP_STRIDE) -> torch.Tensor:
    """(N, S/stride, S/stride, F/stride) uint8: where each crop's own organ lies in it, as
    ``lesion_maps`` measures cover (the supervised oracle is told which voxels are the organ)."""
    grid = on_recipe_grid(ct, labels)
    return torch.stack([crop_cover(grid, crops.boxes[o], crop_size, frames, stride, catalogue.organ(o).label_id)
                        for o in crops.organs])
