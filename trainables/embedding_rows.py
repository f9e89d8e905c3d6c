"""Row-sparse word-embedding fast weights: an episode adapts only the vocabulary rows its batches use.

The inner step's gradient of the word embeddings is zero outside the rows of the support batch's tokens, and the
query pass reads only the rows of its own tokens, so a fast weight of the whole matrix (250k x 384 on the embedded
model, 119k x 768 on mBERT) copies, adds and differentiates ~96M numbers that never change. Here the episode's
rows are gathered once (`W[rows]`, differentiable), the batches' token ids are renumbered into that small table,
and the inner steps and the query pass run on it; the gradient reaches the full matrix through the gather, exactly
as it would through the dense fast weight (tested against the dense path and against `higher`).

`nn.Embedding(padding_idx=p)` gives row `p` no gradient, so the padding token is placed at index `p` of the small
table: the same row stays fixed, and no other token is renumbered to `p`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch

Batch = dict[str, torch.Tensor]


@dataclass(frozen=True)
class EmbeddingRows:
    """Which parameter is the word-embedding matrix, and the padding row `nn.Embedding` keeps fixed."""

    name: str  # key of the word-embedding weight among the fast weights
    padding_idx: int | None


def find_embedding_rows(model: torch.nn.Module, params: Mapping[str, torch.Tensor]) -> EmbeddingRows | None:
    """Return the trainable word-embedding matrix among `params`, or None when it is frozen or absent."""
    try:
        emb = model.get_input_embeddings()
    except (AttributeError, NotImplementedError):  # no such method, or the embeddings replaced (feature cache)
        return None
    if not isinstance(emb, torch.nn.Embedding):
        return None
    try:
        out = model.get_output_embeddings()
    except (AttributeError, NotImplementedError):
        out = None
    if out is not None and getattr(out, "weight", None) is emb.weight:
        return None  # tied to an output layer, which reads every row
    for name, p in params.items():
        if p is emb.weight:
            return EmbeddingRows(name, emb.padding_idx)
    return None


def episode_rows(spec: EmbeddingRows, batches: list[Batch], vocab_size: int) -> torch.Tensor:
    """Return the vocabulary rows `batches` use, in small-table order (the padding row at index `padding_idx`)."""
    ids = torch.cat([b["input_ids"].reshape(-1) for b in batches])
    rows = torch.unique(ids)  # sorted
    p = spec.padding_idx
    if p is None:
        return rows
    pad = torch.tensor([p], dtype=rows.dtype, device=rows.device)
    rest = rows[rows != p]
    if len(rest) < p:  # too few tokens to put the padding row at index p: fill with rows no batch uses
        unused = torch.ones(vocab_size, dtype=torch.bool, device=rows.device)
        unused[rows] = False
        unused[p] = False
        rest = torch.cat([rest, unused.nonzero().reshape(-1)[: p - len(rest)]])
    return torch.cat([rest[:p], pad, rest[p:]])


def renumber(batches: list[Batch], rows: torch.Tensor, vocab_size: int) -> list[Batch]:
    """Return `batches` with their token ids replaced by their index in `rows` (other keys shared, not copied)."""
    index = torch.empty(vocab_size, dtype=rows.dtype, device=rows.device)
    index[rows] = torch.arange(len(rows), dtype=rows.dtype, device=rows.device)
    return [{**b, "input_ids": index[b["input_ids"]]} for b in batches]


def restrict(params: Mapping[str, torch.Tensor], spec: EmbeddingRows, batches: list[Batch]
             ) -> tuple[dict[str, torch.Tensor], list[Batch]]:
    """Return the fast weights with the embedding matrix cut to the episode's rows, and the renumbered batches."""
    full = params[spec.name]
    rows = episode_rows(spec, batches, full.shape[0])
    small = dict(params)
    small[spec.name] = full[rows]  # (len(rows), hidden); its backward scatters into the full matrix's gradient
    return small, renumber(batches, rows, full.shape[0])
