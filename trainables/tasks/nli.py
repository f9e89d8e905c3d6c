"""Sentence-pair classification: encoding, dynamic-padding batches, loss, predictions (any NLI data set).

Each language's data is tokenized once into an `Encoded` set; batches are then cut from it by row
index and padded to the longest sequence in the batch, not to `max_length`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call

from xlamaml.trainables.data.xnli import LABELS
from xlamaml.trainables.local_files import write_text_whole
from xlamaml.trainables.tasks.batching import pad_inputs
from xlamaml.trainables.tasks.ragged import pack, pack_strings, unpack_lists, unpack_strings

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

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Return the set as flat arrays (what `from_arrays` reads; stored as .npz, no pickle)."""
        ids, rows = pack(self.input_ids)
        uids, uid_offsets = pack_strings(self.uids)
        out = {"lang": np.asarray(self.lang), "uids": uids, "uid_offsets": uid_offsets, "input_ids": ids,
               "row_offsets": rows, "labels": self.labels, "pad_id": np.asarray(self.pad_id)}
        if self.token_type_ids is not None:
            out["token_type_ids"] = pack(self.token_type_ids, np.int8)[0]  # same row offsets as input_ids
        return out

    @classmethod
    def from_arrays(cls, a: Mapping[str, np.ndarray]) -> "Encoded":
        """Return the set stored by `to_arrays`."""
        rows = a["row_offsets"]
        return cls(str(a["lang"]), unpack_strings(a["uids"], a["uid_offsets"]), unpack_lists(a["input_ids"], rows),
                   unpack_lists(a["token_type_ids"], rows) if "token_type_ids" in a else None,
                   a["labels"].astype(np.int64), int(a["pad_id"]))

    def subset(self, rows: Sequence[int]) -> "Encoded":
        """Return the rows `rows` as a new Encoded set."""
        tt = [self.token_type_ids[i] for i in rows] if self.token_type_ids is not None else None
        return Encoded(self.lang, [self.uids[i] for i in rows], [self.input_ids[i] for i in rows], tt,
                       self.labels[np.asarray(rows, dtype=np.int64)], self.pad_id)


def pair_budget(la: int, lb: int, budget: int) -> tuple[int, int]:
    """Return how many tokens of each side to keep so they fit `budget` (tokenizers' longest-first rule)."""
    if la + lb <= budget:
        return la, lb
    swap = la > lb
    n1, n2 = (lb, la) if swap else (la, lb)  # n1 is the shorter side
    n2 = n1 if n1 > budget else max(n1, budget - n1)
    if n1 + n2 > budget:
        n1 = budget // 2
        n2 = n1 + budget % 2
    ka, kb = (n2, n1) if swap else (n1, n2)
    return min(la, ka), min(lb, kb)


@dataclass(frozen=True)
class PairTemplate:
    """Where a tokenizer's post-processor puts special tokens around a pair: prefix A middle B suffix."""

    prefix: list[int]
    middle: list[int]
    suffix: list[int]
    types: tuple[int, int, int, int, int]  # token type of prefix, A, middle, B, suffix

    def build(self, a: list[int], b: list[int]) -> tuple[list[int], list[int]]:
        """Return (input_ids, token_type_ids) of the pair a, b."""
        ids = self.prefix + a + self.middle + b + self.suffix
        t = self.types
        types = ([t[0]] * len(self.prefix) + [t[1]] * len(a) + [t[2]] * len(self.middle) + [t[3]] * len(b)
                 + [t[4]] * len(self.suffix))
        return ids, types


def pair_template(backend) -> PairTemplate:
    """Return the special-token layout of pairs, read off the post-processor on a sample pair."""
    a, b = backend.encode_batch(["a", "b"], add_special_tokens=False)
    pair = backend.post_process(a, b, add_special_tokens=True)
    ids, types = pair.ids, pair.type_ids
    # Encoding.sequence_ids is unreliable after post-processing, so find the two sides by content.
    a0 = _find(ids, a.ids, 0)
    b0 = _find(ids, b.ids, a0 + len(a.ids)) if a0 >= 0 else -1
    if a0 < 0 or b0 < 0:
        raise ValueError("tokenizer: cannot find both sides of a pair in its post-processor's output")
    a1, b1 = a0 + len(a.ids), b0 + len(b.ids)
    return PairTemplate(ids[:a0], ids[a1:b0], ids[b1:],
                        (types[0], types[a0], types[a1] if a1 < b0 else types[a0], types[b0],
                         types[b1] if b1 < len(ids) else types[b0]))


def _find(seq: list[int], sub: list[int], start: int) -> int:
    for i in range(start, len(seq) - len(sub) + 1):
        if seq[i : i + len(sub)] == sub:
            return i
    return -1


def encode_nli(dataset, tokenizer, max_length: int) -> Encoded:
    """Return the tokenized pairs of a per-language `datasets.Dataset` (premise, hypothesis, label)."""
    # Each side is tokenized alone and cut here: the tokenizers library's own longest-first
    # truncation builds overflow pieces for every cut pair and is ~15x slower when most are cut.
    backend = tokenizer.backend_tokenizer
    backend.no_truncation()
    backend.no_padding()
    firsts = backend.encode_batch(list(dataset["premise"]), add_special_tokens=False)
    seconds = backend.encode_batch(list(dataset["hypothesis"]), add_special_tokens=False)
    template = pair_template(backend)
    budget = max_length - backend.num_special_tokens_to_add(is_pair=True)
    ids, types = [], []
    for a, b in zip(firsts, seconds):
        ka, kb = pair_budget(len(a.ids), len(b.ids), budget)
        i, t = template.build(a.ids[:ka], b.ids[:kb])
        ids.append(i)
        types.append(t)
    uses_types = "token_type_ids" in tokenizer.model_input_names
    lang = dataset[0]["lang"] if len(dataset) else "?"
    return Encoded(
        lang=lang,
        uids=[str(u) for u in dataset["uid"]],
        input_ids=ids,
        token_type_ids=types if uses_types else None,
        labels=np.asarray(dataset["label"], dtype=np.int64),
        pad_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
    )


def collate(enc: Encoded, rows: Sequence[int], device: torch.device | str = "cpu") -> Batch:
    """Return a padded batch of `rows`: input_ids/attention_mask[/token_type_ids] (B, T), labels (B,)."""
    types = [enc.token_type_ids[i] for i in rows] if enc.token_type_ids is not None else None
    batch = pad_inputs([enc.input_ids[i] for i in rows], types, enc.pad_id)
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


def write_predictions(preds: np.ndarray, path: Path) -> None:
    """Write one label word per line in the data's row order (the XTREME prediction format)."""
    write_text_whole(path, "".join(LABELS[p] + "\n" for p in preds))
