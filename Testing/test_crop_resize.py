"""crop_resize: the level-by-level resize in row blocks equals torch's trilinear resize of
the whole crop bit for bit (and callers can tell the sizes where it does not)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from TotalFMLib.crops.crop_resize import column_ranges, level_by_level_exact, resize_columns, resize_levels, resize_rows, resize_whole, rows_per_call


def reference(src: torch.Tensor, crop_size: int, frames: int) -> torch.Tensor:
    """The recipe's resize as the slow reference writes it."""
    return F.interpolate(src[None], size=(crop_size, crop_size, frames), mode="trilinear", align_corners=False)[0]


def crop(y: int, x: int, z: int, seed: int) -> torch.Tensor:
    """A windowed-looking crop: values in [0, 1], flat areas and edges, in the (3, Y, X, Z) layout."""
    g = torch.Generator().manual_seed(seed)
    values = torch.rand((3, y, x, z), generator=g)
    values[:, : y // 3] = values[:, : y // 3].round()
    return values


# Y and X: kept (192), grown (< 192), shrunk (192..448); Z: up (< 32), down, kept
SHAPES = [(192, 192, 12), (192, 192, 32), (192, 192, 109), (192, 316, 58), (222, 192, 10), (258, 372, 109),
          (101, 122, 40), (448, 448, 3), (1, 192, 1)]


@pytest.mark.parametrize("shape", SHAPES)
def test_levels_equal_torchs_trilinear_at_the_published_size(shape):
    src = crop(*shape, seed=sum(shape))
    assert torch.equal(resize_levels(src, 192, 32), reference(src, 192, 32)), shape


def test_levels_equal_torchs_trilinear_on_one_thread(torch_threads):
    torch.set_num_threads(1)
    # torch's 2-D kernel changes formula for 3 channels on one thread; resize_rows never passes 3 channels
    for shape in [(192, 316, 58), (258, 372, 109), (195, 200, 3)]:
        src = crop(*shape, seed=1)
        assert torch.equal(resize_levels(src, 192, 32), reference(src, 192, 32)), shape


def test_blocks_of_rows_and_column_ranges_give_the_same_numbers():
    src = crop(258, 372, 40, seed=7)
    want = reference(src, 192, 32)
    rows = torch.full((3, 258, 192, 32), float("nan"))
    edges = [0, 1, 5, 17, 100, 101, 258]  # uneven blocks, as the row blocks of a case cut a crop
    for a, b in zip(edges[:-1], edges[1:]):
        resize_rows(src[:, a:b], rows[:, a:b])
    out = torch.full((3, 192, 192, 32), float("nan"))
    for start, stop in reversed(column_ranges(192, 32)):
        resize_columns(rows, out, start, stop)
    assert torch.equal(out, want)
    assert column_ranges(192, 32)[-1][1] == 192 * 32 and rows_per_call(192, 32) >= 1


def test_strided_views_of_a_wider_block():
    # the crop as a view into a block of rows that spans more X and Z than the crop
    block = crop(5, 447, 112, seed=3)
    view = block[:, :, 100:292, 20:75]
    out = torch.empty((3, 5, 192, 32))
    resize_rows(view, out)
    want = torch.empty((3, 5, 192, 32))
    resize_rows(view.contiguous(), want)
    assert torch.equal(out, want)


def test_the_published_size_is_resized_level_by_level():
    assert level_by_level_exact(192, 32)


# (128, 24): a size where levels do match, other than the published one (whose two tests above imply it)
@pytest.mark.parametrize("size", [(96, 16), (64, 16), (16, 4), (128, 24)])
def test_level_by_level_exact_says_whether_levels_match(size):
    src = crop(size[0] + 9, size[0] + 30, size[1] + 3, seed=5)
    assert torch.equal(resize_levels(src, *size), reference(src, *size)) == level_by_level_exact(*size)


@pytest.mark.parametrize("size", [(96, 16), (192, 32)])
def test_resize_whole_of_any_layout(size):
    src = crop(150, 201, 37, seed=11)
    # contiguous (as organ_crops gathers it), channels last, and the reference's permuted view
    layouts = [src, src.permute(1, 2, 3, 0).contiguous().permute(3, 0, 1, 2),
               src.permute(0, 3, 1, 2).contiguous().permute(0, 2, 3, 1)]
    for layout in layouts:
        out = torch.empty((3, size[0], size[0], size[1]))
        resize_whole(layout, out)
        assert torch.equal(out, reference(src, *size))
