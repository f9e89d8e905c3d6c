"""The base encoder's own cross-lingual similarity: side information for the predictive search (side_info.py).

For two languages, the mean cosine similarity of the encoder's sentence embeddings of parallel sentences (XNLI dev
premises: line i of every language's file translates the same pair). Each language's embeddings are centred first
(its mean embedding subtracted): a pretrained encoder's embeddings share a large common direction and a per-language
offset, so uncentred cosines are all near 1 and mostly say which script/language a sentence is in; after centring,
a pair scores high only when the translations sit where their source sits relative to the rest of its language.

The table is computed once (benchmarks/encoder_similarity.py) and stored as CSV: lang_a,lang_b,similarity.
"""

from __future__ import annotations

import csv
import itertools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import PreTrainedTokenizerBase

from xlamaml.trainables.data.xnli import load_xnli

HEADER: tuple[str, ...] = ("lang_a", "lang_b", "similarity")


def _encoder(model: torch.nn.Module) -> torch.nn.Module:
    """Return the bare encoder of `model` (a BertModel for a BertForSequenceClassification; `model` itself if bare)."""
    # A head's forward returns logits, not per-token states; base_model is the encoder under any transformers head
    # (and a bare encoder's base_model is itself).
    return getattr(model, "base_model", model)


def sentence_embeddings(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, texts: list[str],
                        batch_size: int = 32, max_length: int = 128) -> torch.Tensor:
    """Return a (len(texts), hidden) float32 CPU tensor: the mean of the last hidden states over non-padding tokens."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: expected a positive number")
    encoder = _encoder(model)
    device = next(encoder.parameters()).device
    was_training = model.training
    model.eval()  # dropout off: the same text always gives the same embedding
    # Batches of similar lengths pad less (a 12-layer encoder on CPU spends its time on padding otherwise);
    # the result is put back in the order of `texts`.
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out: list[torch.Tensor | None] = [None] * len(texts)
    try:
        with torch.no_grad():
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=max_length,
                                return_tensors="pt")
                inputs = {k: v.to(device) for k, v in enc.items()
                          if k in ("input_ids", "attention_mask", "token_type_ids")}
                result = encoder(**inputs)
                hidden = getattr(result, "last_hidden_state", None)
                if hidden is None:  # an encoder returning only hidden_states: the last layer's is the same
                    hidden = encoder(**inputs, output_hidden_states=True).hidden_states[-1]
                mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)     # (b, t, 1): 1 on real tokens
                summed = (hidden * mask).sum(dim=1)                                # (b, h)
                pooled = (summed / mask.sum(dim=1).clamp(min=1.0)).float().cpu()  # (b, h)
                for row, i in enumerate(idx):
                    out[i] = pooled[row]
    finally:
        model.train(was_training)
    if not texts:
        hidden_size = getattr(getattr(encoder, "config", None), "hidden_size", 0)
        return torch.zeros(0, hidden_size)
    return torch.stack(out)  # (n, h)


def _centred_unit(emb: torch.Tensor) -> torch.Tensor:
    """Return (n, h) float64 rows of `emb` less their mean, scaled to unit length (a zero row stays zero)."""
    centred = emb.double() - emb.double().mean(dim=0, keepdim=True)  # (n, h): the language's own offset removed
    return F.normalize(centred, dim=1, eps=1e-12)


def encoder_similarity(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase,
                       texts_by_lang: Mapping[str, Sequence[str]], batch_size: int = 32,
                       max_length: int = 128) -> dict[tuple[str, str], float]:
    """Return (a, b) -> mean cosine of a's and b's centred embeddings of parallel texts, for every ordered pair of
    distinct languages (symmetric, in [-1, 1])."""
    langs = list(texts_by_lang)
    if len(langs) < 2:
        raise ValueError(f"encoder_similarity: need at least 2 languages; got {langs}")
    sizes = {lang: len(texts_by_lang[lang]) for lang in langs}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"encoder_similarity: the texts must be parallel (as many in each language); got {sizes}")
    n = sizes[langs[0]]
    if n < 2:
        # One sentence minus the mean of one sentence is zero: centring needs at least two.
        raise ValueError(f"encoder_similarity: need at least 2 parallel texts per language; got {n}")
    unit = {lang: _centred_unit(sentence_embeddings(model, tokenizer, list(texts_by_lang[lang]), batch_size,
                                                    max_length))
            for lang in langs}  # lang -> (n, h)
    sims: dict[tuple[str, str], float] = {}
    for a, b in itertools.combinations(langs, 2):
        cos = (unit[a] * unit[b]).sum(dim=1)  # (n,): sentence i in a against its translation in b
        value = min(1.0, max(-1.0, float(cos.mean())))
        sims[a, b] = sims[b, a] = value
    return sims


def read_parallel(data_dir: str | Path | None, langs: Sequence[str], n: int, split: str = "dev",
                  distinct: bool = True) -> dict[str, list[str]]:
    """Return {lang: the first `n` premises of the XNLI `split`}, parallel across `langs` (data_dir None: the shared
    data). distinct: each premise once (XNLI repeats every premise for its 3 hypotheses)."""
    if n < 1:
        raise ValueError(f"read_parallel: n={n}: expected a positive number")
    # load_xnli's DataError (a ValueError) names the missing folder or <lang>.tsv[.gz] path.
    data = load_xnli("auto", split, list(langs), None if data_dir is None else str(data_dir))
    premises = {lang: list(ds["premise"]) for lang, ds in data.items()}
    uids = {lang: list(ds["uid"]) for lang, ds in data.items()}
    first = langs[0]
    for lang in langs[1:]:
        if uids[lang] != uids[first]:
            raise ValueError(f"XNLI {split}: {lang}'s rows are not parallel to {first}'s (their ids differ)")
    rows = range(len(premises[first]))
    if distinct:
        # A row starts a new premise when it differs from the row before in any language (the runs of 3 are the
        # same in every language, but a translation could repeat a sentence that the source does not).
        rows = [i for i in rows if i == 0 or any(premises[lang][i] != premises[lang][i - 1] for lang in langs)]
    rows = list(rows)[:n]
    if len(rows) < n:
        kind = "distinct premises" if distinct else "premises"
        raise ValueError(f"XNLI {split}: only {len(rows)} {kind} per language; asked for n={n}")
    return {lang: [premises[lang][i] for i in rows] for lang in langs}


def write_similarity(path: str | Path, sims: Mapping[tuple[str, str], float]) -> Path:
    """Return `path`, written as CSV lang_a,lang_b,similarity: one row per unordered pair (lang_a < lang_b)."""
    pairs: dict[tuple[str, str], float] = {}
    for (a, b), value in sims.items():
        if a == b:
            continue
        key = (a, b) if a < b else (b, a)
        if key in pairs and not math.isclose(pairs[key], value, abs_tol=1e-9):
            raise ValueError(f"{a}-{b}: the two orders differ ({pairs[key]} and {value}); expected symmetric values")
        pairs[key] = float(value)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(HEADER)
        for (a, b), value in sorted(pairs.items()):
            w.writerow([a, b, f"{value:.6f}"])
    return path


def read_similarity(path: str | Path) -> dict[tuple[str, str], float]:
    """Return (a, b) -> similarity, both orders, from a CSV written by `write_similarity`."""
    out: dict[tuple[str, str], float] = {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != HEADER:
            raise ValueError(f"{path}: line 1: expected the header {','.join(HEADER)}; got {header}")
        for row in reader:
            line = reader.line_num
            if not row:
                continue
            if len(row) != 3:
                raise ValueError(f"{path}: line {line}: expected 3 fields lang_a,lang_b,similarity; got {row}")
            a, b, text = (x.strip() for x in row)
            if not a or not b or a == b:
                raise ValueError(f"{path}: line {line}: expected two different language codes; got {a!r}, {b!r}")
            try:
                value = float(text)
            except ValueError:
                raise ValueError(f"{path}: line {line}: similarity {text!r} is not a number") from None
            if not -1.0 <= value <= 1.0:  # also rejects nan
                raise ValueError(f"{path}: line {line}: similarity {text} is outside [-1, 1]")
            if (a, b) in out:
                raise ValueError(f"{path}: line {line}: the pair {a}-{b} appears twice")
            out[a, b] = out[b, a] = value
    return out
