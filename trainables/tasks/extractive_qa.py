"""Extractive QA (any SQuAD-style data): windows over long contexts, dynamic-padding batches, loss, span post-processing.

Each language's data is tokenized once into a `QAEncoded` set of windows (question first, then a slice of the
context, as in the HF/XTREME recipe); batches are cut from it by window index and padded to the longest
window in the batch, not to `max_length`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call
from transformers import BertForQuestionAnswering, PreTrainedModel, PreTrainedTokenizerFast

from xlamaml.trainables.config import ModelConfig
from xlamaml.trainables.models import build_tiny_model
from xlamaml.trainables.tasks.batching import pad_inputs
from xlamaml.trainables.tasks.ragged import pack, pack_strings, unpack_arrays, unpack_lists, unpack_strings

Batch = dict[str, torch.Tensor]
Span = tuple[int, int]  # [start, end) character offsets into the context
OUTSIDE = -1  # the offset of a question or special token: it has no span in the context


@dataclass
class QAEncoded:
    """One language's QA examples cut into windows (ragged lists, no padding); window i came from example_index[i]."""

    lang: str
    uids: list[str]  # per example
    contexts: list[str]  # per example
    answers: list[list[str]]  # per example: the gold answer texts
    input_ids: list[list[int]]  # per window
    token_type_ids: list[list[int]] | None  # per window; None when the tokenizer uses none
    # Per window, (T, 2) int32: each token's [start, end) span in its context, OUTSIDE (-1, -1) for question and
    # special tokens. Arrays rather than lists of tuples: SQuAD train's ~88k windows would take ~1.5 GB as tuples.
    offsets: list[np.ndarray]
    example_index: np.ndarray  # (windows,) int64
    start_positions: np.ndarray  # (windows,) int64: the answer's first token, 0 (CLS) when not in the window
    end_positions: np.ndarray  # (windows,) int64: its last token (inclusive), 0 when not in the window
    example_windows: list[list[int]]  # per example: its windows, in context order
    pad_id: int

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def num_examples(self) -> int:
        """Return the number of examples (questions), not windows."""
        return len(self.uids)

    def span(self, w: int, i: int) -> Span | None:
        """Return the context span of token i of window w, or None for a question or special token."""
        a, b = self.offsets[w][i]
        return None if a == OUTSIDE else (int(a), int(b))

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Return the set as flat arrays (what `from_arrays` reads; stored as .npz, no pickle)."""
        ids, rows = pack(self.input_ids)
        uids, uid_offsets = pack_strings(self.uids)
        contexts, context_offsets = pack_strings(self.contexts)
        answers, answer_offsets = pack_strings([a for answers in self.answers for a in answers])
        windows, window_offsets = pack(self.example_windows, np.int64)
        out = {"lang": np.asarray(self.lang), "uids": uids, "uid_offsets": uid_offsets, "contexts": contexts,
               "context_offsets": context_offsets, "answers": answers, "answer_offsets": answer_offsets,
               "answers_per_example": np.asarray([len(a) for a in self.answers], dtype=np.int64),
               "input_ids": ids, "row_offsets": rows, "offsets": pack(self.offsets)[0],  # (sum T, 2), same rows
               "example_index": self.example_index, "start_positions": self.start_positions,
               "end_positions": self.end_positions, "example_windows": windows, "window_offsets": window_offsets,
               "pad_id": np.asarray(self.pad_id)}
        if self.token_type_ids is not None:
            out["token_type_ids"] = pack(self.token_type_ids, np.int8)[0]
        return out

    @classmethod
    def from_arrays(cls, a: Mapping[str, np.ndarray]) -> "QAEncoded":
        """Return the set stored by `to_arrays`."""
        rows = a["row_offsets"]
        flat_answers = unpack_strings(a["answers"], a["answer_offsets"])
        bounds = np.concatenate([[0], np.cumsum(a["answers_per_example"])]).tolist()
        return cls(
            str(a["lang"]), unpack_strings(a["uids"], a["uid_offsets"]),
            unpack_strings(a["contexts"], a["context_offsets"]),
            [flat_answers[i:j] for i, j in zip(bounds[:-1], bounds[1:])], unpack_lists(a["input_ids"], rows),
            unpack_lists(a["token_type_ids"], rows) if "token_type_ids" in a else None,
            unpack_arrays(a["offsets"].astype(np.int32), rows), a["example_index"].astype(np.int64),
            a["start_positions"].astype(np.int64), a["end_positions"].astype(np.int64),
            unpack_lists(a["example_windows"], a["window_offsets"]), int(a["pad_id"]),
        )

    def select_examples(self, examples: Sequence[int]) -> "QAEncoded":
        """Return the examples `examples` with all their windows as a new QAEncoded set."""
        windows = [w for e in examples for w in self.example_windows[e]]
        new_index = {e: i for i, e in enumerate(examples)}
        example_windows, pos = [], 0
        for e in examples:
            example_windows.append(list(range(pos, pos + len(self.example_windows[e]))))
            pos += len(self.example_windows[e])
        w = np.asarray(windows, dtype=np.int64)
        return QAEncoded(
            self.lang, [self.uids[e] for e in examples], [self.contexts[e] for e in examples],
            [self.answers[e] for e in examples], [self.input_ids[i] for i in windows],
            [self.token_type_ids[i] for i in windows] if self.token_type_ids is not None else None,
            [self.offsets[i] for i in windows],
            np.asarray([new_index[int(self.example_index[i])] for i in windows], dtype=np.int64),
            self.start_positions[w], self.end_positions[w], example_windows, self.pad_id,
        )


# --- encoding -------------------------------------------------------------------------------------------------


def encode_qa(dataset, tokenizer: PreTrainedTokenizerFast, max_length: int = 384, doc_stride: int = 128,
              max_query_length: int = 64) -> QAEncoded:
    """Return the windows of a QA `datasets.Dataset` (uid, question, context, answers) with start/end labels."""
    # doc_stride is the overlap in context tokens between consecutive windows (the tokenizer's `stride`, as in
    # HF run_qa.py), not the step between window starts.
    questions, longest = _cut_questions([q.lstrip() for q in dataset["question"]], tokenizer, max_query_length)
    room = max_length - tokenizer.backend_tokenizer.num_special_tokens_to_add(is_pair=True) - longest
    if room <= doc_stride:  # the tokenizer's own error here ("sequence to truncate too short") names neither
        raise ValueError(f"encode_qa: max_length {max_length} leaves {room} context tokens beside a "
                         f"{longest}-token question; expected more than doc_stride {doc_stride}")
    contexts = list(dataset["context"])
    answers = list(dataset["answers"])
    enc = tokenizer(questions, contexts, truncation="only_second", max_length=max_length, stride=doc_stride,
                    return_overflowing_tokens=True, return_offsets_mapping=True, padding=False)
    uses_types = "token_type_ids" in tokenizer.model_input_names and "token_type_ids" in enc
    example_index = np.asarray(enc["overflow_to_sample_mapping"], dtype=np.int64)
    offsets, starts, ends = [], [], []
    example_windows: list[list[int]] = [[] for _ in contexts]
    spaces: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # per example, built once for all its windows
    for w, ex in enumerate(example_index.tolist()):
        if ex not in spaces:
            spaces[ex] = _space_maps(contexts[ex])
        in_ctx = np.asarray([sid == 1 for sid in enc.sequence_ids(w)])  # sequence 1 = the context
        raw = np.asarray(enc["offset_mapping"][w], dtype=np.int32).reshape(-1, 2)  # (T, 2)
        offs = np.full_like(raw, OUTSIDE)
        offs[in_ctx] = _trim(raw[in_ctx], *spaces[ex])  # question tokens' offsets point into the question
        offsets.append(offs)
        first = answers[ex]["answer_start"][0]  # train-time label: the first answer
        s, e = _answer_tokens(offs, first, first + len(answers[ex]["text"][0]))
        starts.append(s)
        ends.append(e)
        example_windows[ex].append(w)
    lang = dataset[0]["lang"] if len(dataset) else "?"
    return QAEncoded(
        lang=lang,
        uids=[str(u) for u in dataset["uid"]],
        contexts=contexts,
        answers=[list(a["text"]) for a in answers],
        input_ids=enc["input_ids"],
        token_type_ids=enc["token_type_ids"] if uses_types else None,
        offsets=offsets,
        example_index=example_index,
        start_positions=np.asarray(starts, dtype=np.int64),
        end_positions=np.asarray(ends, dtype=np.int64),
        example_windows=example_windows,
        pad_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
    )


def _cut_questions(questions: list[str], tokenizer: PreTrainedTokenizerFast,
                   max_query_length: int) -> tuple[list[str], int]:
    """Return (the questions cut as text after their first `max_query_length` tokens, the longest kept length)."""
    # The tokenizer's pair truncation can only cut one side ("only_second" keeps the whole question), so a
    # long question is shortened here, at the end of its last kept token.
    backend = tokenizer.backend_tokenizer
    backend.no_truncation()  # a previous call's truncation setting stays on the backend
    backend.no_padding()
    encs = backend.encode_batch(questions, add_special_tokens=False)
    cut = [q if len(e.ids) <= max_query_length else q[: e.offsets[max_query_length - 1][1]]
           for q, e in zip(questions, encs)]
    return cut, max((min(len(e.ids), max_query_length) for e in encs), default=0)


def _space_maps(context: str) -> tuple[np.ndarray, np.ndarray]:
    """Return (next_text, end_text), both (len+1,): the first non-space at or after k, the trimmed end before k."""
    n = len(context)
    is_space = np.fromiter((c.isspace() for c in context), dtype=bool, count=n)
    idx = np.arange(n)
    next_text = np.full(n + 1, n, dtype=np.int32)
    next_text[:n] = np.minimum.accumulate(np.where(is_space, n, idx)[::-1])[::-1]
    end_text = np.zeros(n + 1, dtype=np.int32)
    end_text[1:] = np.maximum.accumulate(np.where(is_space, 0, idx + 1))
    return next_text, end_text


def _trim(offs: np.ndarray, next_text: np.ndarray, end_text: np.ndarray) -> np.ndarray:
    """Return token spans (T, 2) without their leading and trailing whitespace ("▁x" pieces cover the space)."""
    a = np.minimum(next_text[offs[:, 0]], offs[:, 1])
    b = np.maximum(end_text[offs[:, 1]], a)  # a whitespace-only token becomes empty, at its end
    return np.stack([a, b], axis=1).astype(np.int32)


def _answer_tokens(offs: np.ndarray, start_char: int, end_char: int) -> tuple[int, int]:
    """Return the (first, last) tokens of the answer [start_char, end_char) in a window, or (0, 0) if not all in it."""
    ctx = np.nonzero(offs[:, 0] != OUTSIDE)[0]
    if not len(ctx) or offs[ctx[0], 0] > start_char or offs[ctx[-1], 1] < end_char:
        return 0, 0
    # The start token is the last one starting at or before the answer; the end token the first one from there
    # that reaches the answer's end (a subword can run past either edge).
    first = int(ctx[offs[ctx, 0] <= start_char][-1])
    after = ctx[ctx >= first]
    last = int(after[offs[after, 1] >= end_char][0])
    return first, last


# --- batches and loss ---------------------------------------------------------------------------------------


def collate_qa(enc: QAEncoded, rows: Sequence[int], device: torch.device | str = "cpu") -> Batch:
    """Return a padded batch of windows `rows`: input_ids/attention_mask[/token_type_ids] (B, T), start/end (B,)."""
    return collate_windows([(enc, w) for w in rows], device)


def collate_windows(items: Sequence[tuple[QAEncoded, int]], device: torch.device | str = "cpu") -> Batch:
    """Return a padded batch of (encoded set, window) items, which may come from several languages."""
    first = items[0][0]
    types = [enc.token_type_ids[w] for enc, w in items] if first.token_type_ids is not None else None
    batch = pad_inputs([enc.input_ids[w] for enc, w in items], types, first.pad_id)
    batch["start_positions"] = torch.as_tensor([int(enc.start_positions[w]) for enc, w in items])
    batch["end_positions"] = torch.as_tensor([int(enc.end_positions[w]) for enc, w in items])
    return {k: v.to(device) for k, v in batch.items()}


def qa_loss_fn(model: torch.nn.Module, params: Mapping[str, torch.Tensor] | None, batch: Batch) -> torch.Tensor:
    """Return the mean of the start and end cross-entropies of `model` (with `params` swapped in when given)."""
    inputs = {k: v for k, v in batch.items() if k not in ("start_positions", "end_positions")}
    if params is None:
        out = model(**inputs)
    else:
        out = functional_call(model, dict(params), args=(), kwargs=inputs)
    # start_logits, end_logits: (B, T); padding positions stay in the softmax, as in BertForQuestionAnswering.
    start = F.cross_entropy(out.start_logits, batch["start_positions"])
    end = F.cross_entropy(out.end_logits, batch["end_positions"])
    return (start + end) / 2


# --- predictions --------------------------------------------------------------------------------------------


def postprocess(enc: QAEncoded, start_logits, end_logits, n_best: int = 20,
                max_answer_length: int = 30) -> dict[str, str]:
    """Return {example uid: answer text}: the best-scoring valid span over all of an example's windows ("" if none)."""
    # start_logits/end_logits: one 1-D array per window (any length >= the window's), or a (windows, T) array.
    best: dict[int, tuple[float, Span]] = {}
    for w, offs in enumerate(enc.offsets):
        s_log = np.asarray(start_logits[w], dtype=np.float64)[: len(offs)]
        e_log = np.asarray(end_logits[w], dtype=np.float64)[: len(offs)]
        # The n best starts and ends are paired; an invalid top pair (end before start, in the question, too
        # long) gives way to the best valid one: the paper's k-best search.
        starts = np.argsort(-s_log, kind="stable")[:n_best]
        ends = np.argsort(-e_log, kind="stable")[:n_best]
        in_ctx = offs[:, 0] != OUTSIDE
        # (n_best, n_best) candidate grid: row = start, column = end.
        length = ends[None, :] - starts[:, None] + 1
        valid = in_ctx[starts][:, None] & in_ctx[ends][None, :] & (length >= 1) & (length <= max_answer_length)
        if not valid.any():
            continue
        score = np.where(valid, s_log[starts][:, None] + e_log[ends][None, :], -np.inf)
        k = int(np.argmax(score))  # the first best in (start rank, end rank) order on ties
        i, j = int(starts[k // len(ends)]), int(ends[k % len(ends)])
        ex = int(enc.example_index[w])
        if ex not in best or score.flat[k] > best[ex][0]:
            best[ex] = (float(score.flat[k]), (int(offs[i, 0]), int(offs[j, 1])))
    out = {}
    for ex, uid in enumerate(enc.uids):
        if ex in best:
            a, b = best[ex][1]
            out[uid] = enc.contexts[ex][a:b].strip()  # an empty "▁" end token can leave a space
        else:
            out[uid] = ""
    return out


@torch.no_grad()
def predict_qa(model: torch.nn.Module, enc: QAEncoded, batch_size: int, device: torch.device | str,
               n_best: int = 20, max_answer_length: int = 30) -> dict[str, str]:
    """Return {example uid: predicted answer text} for every example of `enc`."""
    was_training = model.training
    model.eval()
    # Sorting by length keeps padding (and so wasted compute) small in every batch.
    order = np.argsort([len(s) for s in enc.input_ids], kind="stable")
    start_logits: list[np.ndarray | None] = [None] * len(enc)
    end_logits: list[np.ndarray | None] = [None] * len(enc)
    for begin in range(0, len(order), batch_size):
        rows = order[begin : begin + batch_size].tolist()
        batch = collate_qa(enc, rows, device)
        batch.pop("start_positions")
        batch.pop("end_positions")
        out = model(**batch)
        s, e = out.start_logits.float().cpu().numpy(), out.end_logits.float().cpu().numpy()  # (B, T)
        for b, w in enumerate(rows):
            n = len(enc.input_ids[w])
            start_logits[w], end_logits[w] = s[b, :n], e[b, :n]
    model.train(was_training)
    return postprocess(enc, start_logits, end_logits, n_best=n_best, max_answer_length=max_answer_length)


# --- a tiny model for tests ---------------------------------------------------------------------------------


def build_tiny_qa_model(cfg: ModelConfig, seed: int = 0) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """Return a randomly initialised (fixed by `seed`) tiny BERT span-extraction model and its byte tokenizer."""
    return build_tiny_model(cfg, 2, seed, head=BertForQuestionAnswering)  # 2 labels: start and end logits


# --- training rows -------------------------------------------------------------------------------------------


@dataclass
class QATrain:
    """Training rows: one window per example (the one holding its answer), so the parallel key stays unique."""

    enc: QAEncoded
    windows: list[int]  # per example: the window trained on

    @property
    def uids(self) -> list[str]:
        """Return the example uids (the parallel key), one per training row."""
        return self.enc.uids

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Return the training view as flat arrays: its windows' set plus the window trained on per example."""
        return {**self.enc.to_arrays(), "train_windows": np.asarray(self.windows, dtype=np.int64)}

    @classmethod
    def from_arrays(cls, a: Mapping[str, np.ndarray]) -> "QATrain":
        """Return the training view stored by `to_arrays`."""
        return cls(QAEncoded.from_arrays(a), a["train_windows"].tolist())

    def __len__(self) -> int:
        return len(self.windows)


def train_view(enc: QAEncoded) -> QATrain:
    """Return the training rows of `enc`: per example its first window that holds the answer (else its first)."""
    windows = []
    for ws in enc.example_windows:
        holding = [w for w in ws if enc.start_positions[w] > 0]
        windows.append(holding[0] if holding else ws[0])
    return QATrain(enc, windows)


def collate_train(rows_set: QATrain, rows: Sequence[int], device: torch.device | str = "cpu") -> Batch:
    """Return a padded batch of the training windows of examples `rows`."""
    return collate_qa(rows_set.enc, [rows_set.windows[r] for r in rows], device)


def collate_mixed_qa(sets: Mapping[str, QATrain], pairs: Sequence[tuple[str, int]],
                     device: torch.device | str = "cpu") -> Batch:
    """Return one padded batch of training windows from (lang, example row) pairs of several languages."""
    return collate_windows([(sets[lang].enc, sets[lang].windows[row]) for lang, row in pairs], device)
