"""`Rows`: the grid and subset forms map the decoded rows to their images alike."""

import torch

from ccq.models.rows import Rows


def test_subsets_equal_the_grid_rows_they_select():
    g = torch.Generator().manual_seed(0)
    per_image = torch.randn(3, 4, 2, generator=g)  # B = 3 images
    grid = Rows.grid(2)  # two groups of all three images: rows 0-2, 3-5
    per_row = torch.randn(6, 4, 2, generator=g)
    factor = torch.randn(6, 4, 2, generator=g)
    pick = [torch.tensor([0, 2]), torch.tensor([1])]  # group 0 holds images 0 and 2, group 1 image 1
    selected = torch.tensor([0, 2, 4])  # their rows in the grid
    subsets = Rows.subsets(pick)
    assert subsets.groups == 2 and subsets.sizes == (2, 1) and subsets.image.tolist() == [0, 2, 1]
    torch.testing.assert_close(subsets.spread(per_image), grid.spread(per_image)[selected])
    torch.testing.assert_close(subsets.add(per_row[selected], per_image), grid.add(per_row, per_image)[selected])
    torch.testing.assert_close(
        subsets.addcmul(per_row[selected], per_image, factor[selected]),
        grid.addcmul(per_row, per_image, factor)[selected],
    )
    assert grid.slices(3) == [slice(0, 3), slice(3, 6)] and subsets.slices(3) == [slice(0, 2), slice(2, 3)]
    assert grid.images_of(1) is None and subsets.images_of(1).tolist() == [1]


def test_a_grid_broadcasts_without_copying_one_group():
    per_image = torch.randn(2, 3)
    assert Rows.grid(1).spread(per_image) is per_image
    torch.testing.assert_close(Rows.grid(3).spread(per_image), per_image.repeat(3, 1))
