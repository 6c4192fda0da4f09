"""The CCQ network assembled from its parts (Fig. 2 of the paper; docs/architecture.md#the-network)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from ccq.models.decoder import Decoder
from ccq.models.encoder import CNNEncoder
from ccq.models.head import BranchedDynamicHead
from ccq.models.image_transformer import ImageTransformer
from ccq.models.queries import FocusedQuerying, QueryGenerator
from ccq.models.rows import Rows
from ccq.models.weighting import QueriesToMap, QueryWeighting

ORGAN, TUMOR = 0, 1


def as_task_tensor(
    task_id: torch.Tensor | int | list[int], batch: int, num_tasks: int, device: torch.device
) -> torch.Tensor:
    """Task ids as a LongTensor [batch]; an int applies to every sample. Out-of-range ids raise ValueError."""
    if isinstance(task_id, int | list):  # checked as Python values: no data-dependent branch for exporters
        ids = [task_id] if isinstance(task_id, int) else task_id
        if any(not 0 <= int(i) < num_tasks for i in ids):
            raise ValueError(f"task ids {ids} out of range: the model knows tasks 0..{num_tasks - 1}")
    t = torch.as_tensor(task_id, dtype=torch.long, device=device).reshape(-1)
    if t.numel() == 1 and batch != 1:
        t = t.expand(batch)
    if t.numel() != batch:
        raise ValueError(f"got {t.numel()} task ids for a batch of {batch}")
    # A tensor's values can only be checked eagerly (not on the meta device, not while torch.export traces).
    tracing = torch.compiler.is_exporting() or torch.compiler.is_compiling()
    if t.device.type != "meta" and not tracing and bool(((t < 0) | (t >= num_tasks)).any()):
        raise ValueError(f"task ids {t.tolist()} out of range: the model knows tasks 0..{num_tasks - 1}")
    return t


def check_pairs(pairs: Sequence[tuple[int, int]], num_tasks: int) -> list[tuple[int, int]]:
    """(task id, channel) pairs as ints; ValueError for an empty list, a task out of range or a channel other than
    0 (organ) / 1 (tumor)."""
    checked = [(int(t), int(c)) for t, c in pairs]
    if not checked or any(not (0 <= t < num_tasks and c in (ORGAN, TUMOR)) for t, c in checked):
        raise ValueError(
            f"channels {list(pairs)!r}: expected (task id in 0..{num_tasks - 1}, 0 organ or 1 tumor) pairs"
        )
    return checked


def channels_from_all_tasks(
    forward_all_tasks: Callable[[torch.Tensor, list[int]], torch.Tensor],
    x: torch.Tensor,
    pairs: Sequence[tuple[int, int]],
    num_tasks: int,
) -> torch.Tensor:
    """`forward_channels` of a model whose task passes give both channels at once: only the tasks that some pair
    asks for are run. x: [B, C_in, D, H, W] -> logits [B, P, D, H, W], the P pairs in order."""
    checked = check_pairs(pairs, num_tasks)
    tasks = list(dict.fromkeys(t for t, _ in checked))
    logits = forward_all_tasks(x, tasks)  # [B, T', 2, D, H, W]
    return torch.stack([logits[:, tasks.index(t), c] for t, c in checked], dim=1)


def one_hot_tasks(task_ids: torch.Tensor, num_tasks: int, dtype: torch.dtype) -> torch.Tensor:
    """task_ids: [M] -> [M, num_tasks] one-hot (by comparison, so that it also runs on the meta device)."""
    return (task_ids.unsqueeze(-1) == torch.arange(num_tasks, device=task_ids.device)).to(dtype)


class CCQNet(nn.Module):
    """CCQ: CNN encoder + image transformer, cross-class queries, focused querying, weighting, a decoder with
    attentive skips and a dynamic head; two branches (organ, tumor) that share every weight but their TEB and last
    head biases.

    Every (branch, task) pair that decodes the same image is stacked group-major along the batch axis
    ([G*B, ...], sample index fastest) and runs as one batched pass; the encoder, the image transformer and the
    image half of every skip gate run once per image.
    """

    def __init__(
        self,
        encoder: CNNEncoder,
        image_transformer: ImageTransformer,
        query_generator: QueryGenerator,
        querying: FocusedQuerying | None,
        weighting: QueryWeighting,
        to_map: QueriesToMap,
        decoder: Decoder,
        head: BranchedDynamicHead,
        num_tasks: int,
        num_tokens: int,
        dim: int,
    ) -> None:
        super().__init__()
        self.num_tasks = num_tasks
        self.encoder = encoder
        self.image_transformer = image_transformer
        self.pos_embed = nn.Parameter(torch.randn(1, num_tokens, dim))
        self.task_embed = nn.ModuleList([nn.Linear(num_tasks, dim), nn.Linear(num_tasks, dim)])
        self.query_generator = query_generator
        self.querying = querying
        self.weighting = weighting
        self.to_map = to_map
        self.decoder = decoder
        self.head = head

    def _decode(
        self, x: torch.Tensor, rows: Rows, task_of_row: torch.Tensor, branch_of_group: list[int]
    ) -> torch.Tensor:
        """x: [B, C_in, D, H, W]; rows: which image each of the M decoded rows belongs to, in G groups;
        task_of_row: [M] task ids; branch_of_group: the branch of each group -> logits [M, 1, D, H, W]."""
        skips, feature = self.encoder(x)
        if tuple(feature.shape[2:]) != self.to_map.bottleneck_size:
            raise ValueError(
                f"input of spatial size {tuple(x.shape[2:])} gives a bottleneck {tuple(feature.shape[2:])}; "
                f"this model was built for {self.to_map.bottleneck_size} (its patch size)"
            )
        class_token, tokens = self.image_transformer(feature, self.pos_embed)
        onehot = one_hot_tasks(task_of_row, self.num_tasks, x.dtype)
        parts = zip(rows.slices(x.shape[0]), branch_of_group, strict=True)
        task_embed = torch.cat([self.task_embed[br](onehot[part]) for part, br in parts]).unsqueeze(1)
        q_enc = self.query_generator(task_embed, class_token, rows)
        q_dec = q_enc if self.querying is None else self.querying(q_enc, tokens, self.pos_embed, rows)
        q_map = self.to_map(self.weighting(q_enc, q_dec, task_embed))
        decoded = self.decoder(q_map, skips, rows)
        return self.head(decoded, feature, onehot, branch_of_group, rows)

    def forward(
        self, x: torch.Tensor, task_id: torch.Tensor | int | list[int], labeled: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x: [B, C_in, D, H, W]; task_id: [B] (or one int) -> logits [B, 2, D, H, W] (organ, tumor).

        labeled: [B, 2] bool, for training: only the (sample, branch) pairs it marks are decoded, and the others'
        logits are 0, outside the graph. A loss that ignores the channels a sample's dataset does not label (the
        partial-label loss) gets the same gradients, up to float rounding, for less work: the decoder and head
        are most of a step, and a spleen or lung-tumor sample needs one branch of two."""
        b = x.shape[0]
        t = as_task_tensor(task_id, b, self.num_tasks, x.device)
        if labeled is not None:
            if labeled.shape != (b, 2) or labeled.dtype != torch.bool:
                got = f"{labeled.dtype} {tuple(labeled.shape)}"
                raise ValueError(f"labeled: expected a bool tensor [{b}, 2], got {got}")
            index = {br: labeled[:, br].nonzero().flatten() for br in (ORGAN, TUMOR)}
            index = {br: i for br, i in index.items() if i.numel()}
            if index:
                return self._decode_labeled(x, t, index)
        logits = self._decode(x, Rows.grid(2), torch.cat([t, t]), [ORGAN, TUMOR])
        return logits.view(2, b, *logits.shape[2:]).transpose(0, 1)

    def _decode_labeled(self, x: torch.Tensor, t: torch.Tensor, index: dict[int, torch.Tensor]) -> torch.Tensor:
        """x: [B, C_in, D, H, W]; t: [B] task ids; index: branch -> the samples to decode it for
        -> logits [B, 2, D, H, W], 0 where not decoded."""
        rows = Rows.subsets(list(index.values()))
        assert rows.image is not None
        logits = self._decode(x, rows, t.index_select(0, rows.image), list(index))[:, 0]
        branch = torch.cat([torch.full_like(i, br) for br, i in index.items()])
        out = logits.new_zeros(x.shape[0], 2, *logits.shape[1:])
        return out.index_put((rows.image, branch), logits)

    def forward_all_tasks(self, x: torch.Tensor, task_ids: torch.Tensor | list[int]) -> torch.Tensor:
        """x: [B, C_in, D, H, W]; task_ids: [T] -> logits [B, T, 2, D, H, W]; the encoder and image transformer
        run once, every task's organ and tumor branches in one batched pass."""
        b = x.shape[0]
        tasks = torch.as_tensor(task_ids, dtype=torch.long, device=x.device).reshape(-1)
        as_task_tensor(tasks, tasks.numel(), self.num_tasks, x.device)  # range check
        per_row = tasks.repeat_interleave(2 * b)
        logits = self._decode(x, Rows.grid(2 * tasks.numel()), per_row, [ORGAN, TUMOR] * tasks.numel())
        return logits.view(tasks.numel(), 2, b, *logits.shape[2:]).permute(2, 0, 1, 3, 4, 5)

    def forward_channels(self, x: torch.Tensor, pairs: Sequence[tuple[int, int]]) -> torch.Tensor:
        """x: [B, C_in, D, H, W]; pairs: P (task id, channel: 0 organ / 1 tumor) -> logits [B, P, D, H, W].

        Only the P requested (task, branch) passes run after the shared encoder and image transformer (query
        generation, focused querying, weighting, decoder and head): a channel that no dataset labels costs
        nothing. Every pass depends on its own task and branch only, so each channel equals the one
        `forward_all_tasks` gives (up to float rounding, which the batch size may change)."""
        checked = check_pairs(pairs, self.num_tasks)
        b = x.shape[0]
        tasks = torch.tensor([t for t, _ in checked], dtype=torch.long, device=x.device)
        logits = self._decode(x, Rows.grid(len(checked)), tasks.repeat_interleave(b), [c for _, c in checked])
        return logits.view(len(checked), b, *logits.shape[2:]).transpose(0, 1)
