"""Sentence-pair classification (XNLI): encoding, dynamic-padding batches, loss, predictions.

Each language's data is tokenized once into an `Encoded` set; batches are then cut from it by row
index and padded to the longest sequence in the batch, not to `max_length`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call

LABELS = ("entailment", "neutral", "contradiction")
NUM_LABELS = len(LABELS)

Batch = dict[str, torch.Tensor]


@dataclass
class Encoded:
    """One language's pairs, tokenized (ragged lists, no padding)."""

    lang: str
    uids: list[str]
    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    labels: np.ndarray  # (rows,) int64
    pad_id: int

    def __len__(self) -> int:
        return len(self.input_ids)

    def subset(self, rows: Sequence[int]) -> "Encoded":
        """Return the rows `rows` as a new Encoded set."""
        tt = [self.token_type_ids[i] for i in rows] if self.token_type_ids is not None else None
        return Encoded(self.lang, [self.uids[i] for i in rows], [self.input_ids[i] for i in rows], tt,
                       self.labels[np.asarray(rows, dtype=np.int64)], self.pad_id)


def encode_nli(dataset, tokenizer, max_length: int) -> Encoded:
    """Return the tokenized pairs of a per-language `datasets.Dataset` (premise, hypothesis, label)."""
    enc = tokenizer(list(dataset["premise"]), list(dataset["hypothesis"]), truncation=True,
                    max_length=max_length, padding=False)
    lang = dataset[0]["lang"] if len(dataset) else "?"
    return Encoded(
        lang=lang,
        uids=[str(u) for u in dataset["uid"]],
        input_ids=enc["input_ids"],
        token_type_ids=enc.get("token_type_ids"),
        labels=np.asarray(dataset["label"], dtype=np.int64),
        pad_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
    )


def collate(enc: Encoded, rows: Sequence[int], device: torch.device | str = "cpu") -> Batch:
    """Return a padded batch of `rows`: input_ids/attention_mask[/token_type_ids] (B, T), labels (B,)."""
    seqs = [enc.input_ids[i] for i in rows]
    t = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), t), enc.pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), t), dtype=torch.long)
    for b, s in enumerate(seqs):
        ids[b, : len(s)] = torch.as_tensor(s)
        mask[b, : len(s)] = 1
    batch = {"input_ids": ids, "attention_mask": mask}
    if enc.token_type_ids is not None:
        tt = torch.zeros((len(seqs), t), dtype=torch.long)
        for b, i in enumerate(rows):
            tt[b, : len(enc.token_type_ids[i])] = torch.as_tensor(enc.token_type_ids[i])
        batch["token_type_ids"] = tt
    batch["labels"] = torch.as_tensor(enc.labels[np.asarray(rows, dtype=np.int64)])
    return {k: v.to(device) for k, v in batch.items()}


def collate_mixed(sets: Mapping[str, Encoded], pairs: Sequence[tuple[str, int]],
                  device: torch.device | str = "cpu") -> Batch:
    """Return one padded batch from (lang, row) pairs drawn from several languages' Encoded sets."""
    first = next(iter(sets.values()))
    merged = Encoded("mixed", [], [], [] if first.token_type_ids is not None else None,
                     np.asarray([sets[lang].labels[row] for lang, row in pairs], dtype=np.int64), first.pad_id)
    for lang, row in pairs:
        src = sets[lang]
        merged.uids.append(src.uids[row])
        merged.input_ids.append(src.input_ids[row])
        if merged.token_type_ids is not None:
            merged.token_type_ids.append(src.token_type_ids[row])
    return collate(merged, range(len(pairs)), device)


def loss_fn(model: torch.nn.Module, params: Mapping[str, torch.Tensor] | None, batch: Batch) -> torch.Tensor:
    """Return the mean cross-entropy of `model` (with `params` swapped in when given) on `batch`."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    if params is None:
        logits = model(**inputs).logits
    else:
        logits = functional_call(model, dict(params), args=(), kwargs=inputs)
        logits = logits.logits
    return F.cross_entropy(logits, batch["labels"])  # logits (B, NUM_LABELS)


@torch.no_grad()
def predict(model: torch.nn.Module, enc: Encoded, batch_size: int, device: torch.device | str) -> np.ndarray:
    """Return predicted label ids (rows,) in the set's row order."""
    was_training = model.training
    model.eval()
    # Sorting by length keeps padding (and so wasted compute) small in every batch.
    order = np.argsort([len(s) for s in enc.input_ids], kind="stable")
    preds = np.empty(len(enc), dtype=np.int64)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size].tolist()
        batch = collate(enc, rows, device)
        batch.pop("labels")
        preds[rows] = model(**batch).logits.argmax(-1).cpu().numpy()
    model.train(was_training)
    return preds


def accuracy(preds: np.ndarray, labels: np.ndarray) -> float:
    """Return the fraction of `preds` equal to `labels`."""
    return float((preds == labels).mean()) if len(labels) else float("nan")
