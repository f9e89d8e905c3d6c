"""Dynamic padding shared by the tasks: a batch is as long as its longest sequence."""

from __future__ import annotations

import torch


def pad_inputs(input_ids: list[list[int]], token_type_ids: list[list[int]] | None,
               pad_id: int) -> dict[str, torch.Tensor]:
    """Return input_ids, attention_mask (and token_type_ids when given), each (B, T) with T the longest length."""
    t = max(len(s) for s in input_ids)
    ids = torch.full((len(input_ids), t), pad_id, dtype=torch.long)
    mask = torch.zeros((len(input_ids), t), dtype=torch.long)
    for b, s in enumerate(input_ids):
        ids[b, : len(s)] = torch.as_tensor(s)
        mask[b, : len(s)] = 1
    batch = {"input_ids": ids, "attention_mask": mask}
    if token_type_ids is not None:
        tt = torch.zeros((len(input_ids), t), dtype=torch.long)
        for b, s in enumerate(token_type_ids):
            tt[b, : len(s)] = torch.as_tensor(s)
        batch["token_type_ids"] = tt
    return batch
