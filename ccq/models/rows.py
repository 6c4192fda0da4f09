"""Which image each row of a batched decoding pass belongs to.

CCQ decodes one image several times, once per (task, branch) it is asked for, and runs all of them as one batch
of rows after the encoder and image transformer have run once per image. Per-image tensors (skips, class token,
image keys and values, the image half of the head's controllers) are shared by an image's rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import accumulate

import torch


def grouped(x: torch.Tensor, groups: int) -> torch.Tensor:
    """[G*B, ...] -> [G, B, ...] (group-major batch layout used for branches and tasks)."""
    return x.view(groups, x.shape[0] // groups, *x.shape[1:])


@dataclass(frozen=True)
class Rows:
    """The M rows of a decoding pass over B images, in G groups (one branch, or one task and branch, each).

    A grid (`Rows.grid`): every group holds every image in order, group-major ([G*B], image = row mod B), and
    per-image tensors are broadcast to the rows without a copy: prediction, and training that decodes every
    branch. Subsets (`Rows.subsets`): group g holds the images ``index[g]``, and per-image tensors are gathered:
    training that decodes only the branches a sample's dataset labels.
    """

    groups: int
    sizes: tuple[int, ...] | None = None
    """Rows of each group (subsets only)."""
    image: torch.Tensor | None = None
    """[M] the image of each row, groups one after another (subsets only)."""

    @staticmethod
    def grid(groups: int) -> Rows:
        return Rows(groups)

    @staticmethod
    def subsets(index: list[torch.Tensor]) -> Rows:
        """index: per group, a LongTensor of the images it holds (at least one group)."""
        return Rows(len(index), tuple(int(i.numel()) for i in index), torch.cat(index))

    def slices(self, images: int) -> list[slice]:
        """The rows of each group, for B = ``images``."""
        sizes = self.sizes if self.sizes is not None else (images,) * self.groups
        return [slice(end - size, end) for size, end in zip(sizes, accumulate(sizes), strict=True)]

    def images_of(self, group: int) -> torch.Tensor | None:
        """The images of one group: None in a grid (all of them, in order)."""
        if self.image is None or self.sizes is None:
            return None
        start = sum(self.sizes[:group])
        return self.image[start : start + self.sizes[group]]

    def spread(self, per_image: torch.Tensor) -> torch.Tensor:
        """[B, ...] -> [M, ...], each row's image's entry."""
        if self.image is not None:
            return per_image.index_select(0, self.image)
        if self.groups == 1:
            return per_image
        return per_image.repeat(self.groups, *([1] * (per_image.dim() - 1)))

    def add(self, per_row: torch.Tensor, per_image: torch.Tensor) -> torch.Tensor:
        """per_row [M, ...] + per_image [B, ...] (each row's image) -> [M, ...]."""
        if self.image is not None:
            return per_row + per_image.index_select(0, self.image)
        return (grouped(per_row, self.groups) + per_image.unsqueeze(0)).flatten(0, 1)

    def addcmul(self, per_row: torch.Tensor, per_image: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
        """per_row + per_image * factor, per_row and factor [M, ...], per_image [B, ...] -> [M, ...]."""
        if self.image is not None:
            return torch.addcmul(per_row, per_image.index_select(0, self.image), factor)
        merged = torch.addcmul(grouped(per_row, self.groups), per_image.unsqueeze(0), grouped(factor, self.groups))
        return merged.flatten(0, 1)


ONE_GROUP = Rows.grid(1)
"""One row per image (a decoder shared by every task, as DoDNet's)."""
