"""The rows being generated, as one batch that changes between steps: a row joins with the keys/values of
its prefill and leaves when it is done, and every row's keys/values are kept from step to step (nothing is
recomputed). Rows are left-padded to a common width; the attention mask hides the padding and each row's
position ids count only its real positions, so a row decodes as it would alone."""
from __future__ import annotations

import torch

from ..backbones import FrozenModel
from .mixed import mixed_forward
from .sequences import Sequence

KeyValues = list[tuple[torch.Tensor, torch.Tensor]]  # per layer (B, h_kv, L, d_head)


@torch.no_grad()
def prefill(base: FrozenModel, sequences: list[Sequence], logits_to_keep: int = 1) -> tuple[torch.Tensor, KeyValues, torch.Tensor]:
    """One mixed forward over the sequences' [prompt; text] rows: the logits of their last `logits_to_keep`
    positions (B, K, V), their keys/values and the (B, L) mask over them."""
    output, mask, _ = mixed_forward(base, [seq.row for seq in sequences], logits_to_keep=logits_to_keep, use_cache=True)
    return output.logits, [(layer.keys, layer.values) for layer in output.past_key_values.layers], mask


class RunningBatch:
    def __init__(self, base: FrozenModel):
        self.base = base
        self.clear()

    def clear(self) -> None:
        self.sequences: list[Sequence] = []
        self.key_values: KeyValues = []
        self.mask = torch.zeros(0, 0, dtype=torch.long, device=self.base.device)  # (B, L), 0 on padding
        self.next_ids = torch.zeros(0, dtype=torch.long, device=self.base.device)  # (B,) the token each row reads next

    def __len__(self) -> int:
        return len(self.sequences)

    def join(self, sequences: list[Sequence], key_values: KeyValues, mask: torch.Tensor, next_ids: list[int]) -> None:
        """Add prefilled rows; the narrower side (old rows or new) is padded on the left."""
        if not self.sequences:
            self.key_values, self.mask = key_values, mask
        else:
            width = max(self.mask.shape[1], mask.shape[1])
            self.key_values = [(_stacked(k, new_k, width, 2), _stacked(v, new_v, width, 2))
                               for (k, v), (new_k, new_v) in zip(self.key_values, key_values)]
            self.mask = _stacked(self.mask, mask, width, 1)
        self.next_ids = torch.cat([self.next_ids, torch.tensor(next_ids, dtype=torch.long, device=self.base.device)])
        self.sequences = self.sequences + sequences

    def keep(self, rows: list[int]) -> None:
        """Keep only these rows, and drop the leading columns that no remaining row uses."""
        if len(rows) == len(self.sequences):
            return
        if not rows:
            self.clear()
            return
        index = torch.tensor(rows, device=self.base.device)
        self.sequences = [self.sequences[row] for row in rows]
        self.mask, self.next_ids = self.mask[index], self.next_ids[index]
        first = int(self.mask.any(0).long().argmax())  # the first column some row attends to
        self.mask = self.mask[:, first:]
        self.key_values = [(k[index, :, first:], v[index, :, first:]) for k, v in self.key_values]

    @torch.no_grad()
    def step(self) -> torch.Tensor:
        """Every row reads its next token: (B, V) logits of the token after it."""
        from transformers import DynamicCache

        positions = self.mask.sum(-1, keepdim=True)  # (B, 1): one past the row's real positions
        mask = torch.cat([self.mask, self.mask.new_ones(len(self), 1)], dim=1)
        cache = DynamicCache(ddp_cache_data=self.key_values, config=self.base.model.config)
        output = self.base.model(input_ids=self.next_ids.unsqueeze(-1), attention_mask=mask, position_ids=positions,
                                 past_key_values=cache, use_cache=True, logits_to_keep=1)
        self.mask, self.key_values = mask, [(layer.keys, layer.values) for layer in cache.layers]
        return output.logits[:, -1]


def _stacked(old: torch.Tensor, new: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    """The rows of `old` then of `new` in one tensor `width` wide along `dim` (2 for keys/values, 1 for a mask),
    each right-aligned on zeros. One allocation: padding each side first would copy the whole batch twice."""
    shape = list(old.shape)
    shape[0], shape[dim] = len(old) + len(new), width
    stacked = old.new_zeros(shape)
    for start, part in ((0, old), (len(old), new)):
        stacked.narrow(0, start, len(part)).narrow(dim, width - part.shape[dim], part.shape[dim]).copy_(part)
    return stacked
