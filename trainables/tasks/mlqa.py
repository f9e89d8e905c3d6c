"""The MLQA task: extractive QA on MLQA, with SQuAD v1.1 (or MLQA en dev offline) for the English stage.

No MLQA test split ships with the shared data, so by default (`eval.qa_test: heldout`) half of each language's
dev articles stand in for test and the rest is meta, few-shot and (offline) English-stage data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from transformers import AutoModelForQuestionAnswering

from xlamaml.trainables.config import ModelConfig, RunConfig
from xlamaml.trainables.data.english import subset_indices
from xlamaml.trainables.data.mlqa import heldout_split, load_mlqa, load_mlqa_pair, load_squad
from xlamaml.trainables.data.subset import limit
from xlamaml.trainables.local_files import write_text_whole
from xlamaml.trainables.models import load_pretrained
from xlamaml.trainables.tasks.base import Task
from xlamaml.trainables.tasks.extractive_qa import (QAEncoded, QATrain, build_tiny_qa_model, collate_mixed_qa, collate_train,
                                            encode_qa, predict_qa, qa_loss_fn, train_view)
from xlamaml.trainables.tasks.outcomes import outcome_path, write_outcomes
from xlamaml.trainables.tasks.qa_eval import evaluate_examples, question_scores
from xlamaml.trainables.task_specs import TASK_SPECS


class MLQATask(Task):
    """MLQA: EM and F1 per language as the official script computes them; G-XLT when `eval.gxlt` is on."""

    spec = TASK_SPECS["mlqa"]

    def __init__(self) -> None:
        self._heldout: dict[tuple, frozenset[str]] = {}  # held-out question ids per split setting and language

    def load(self, cfg: RunConfig, split: str, langs: list[str]) -> dict[str, Any]:
        """Return {lang: MLQA dataset of `split`} (offline: the held-out dev articles stand in for test)."""
        if cfg.eval.qa_test == "official":  # MLQA_V1 test files: the whole dev set trains, test scores
            return load_mlqa(cfg.data.mlqa, split, langs, cfg.data.dir)
        # Offline there is no MLQA test split: a deterministic part of dev, whole articles, stands in for it.
        dev = load_mlqa(cfg.data.mlqa, "dev", langs, cfg.data.dir)
        return {lang: self._split_dev(cfg, ds)[0 if split == "dev" else 1] for lang, ds in dev.items()}

    @staticmethod
    def _split_dev(cfg: RunConfig, ds: Any) -> tuple[Any, Any]:
        """Return (meta/few-shot part, held-out test part) of an MLQA dev set, split by article."""
        return heldout_split(ds, cfg.eval.qa_heldout_fraction, cfg.seed)

    def english_data(self, cfg: RunConfig) -> tuple[Any, str]:
        """Return (English QA training questions, where they came from): SQuAD when given, else MLQA en dev."""
        source = cfg.data.english
        if source in ("squad-hub", "hub"):
            ds, what = load_squad("hub", cfg.data.dir), "SQuAD v1.1 train (hub)"
        elif source not in ("auto", "mlqa-en-dev"):
            ds, what = load_squad(source, cfg.data.dir), f"SQuAD v1.1 ({source})"
        else:
            ds, what = None, ""
            if source == "auto":
                try:
                    ds, what = load_squad("auto", cfg.data.dir), f"SQuAD v1.1 ({cfg.data.dir}/squad)"
                except (FileNotFoundError, ValueError):
                    ds = None
            if ds is None:  # offline: the English MLQA dev examples not held out for evaluation
                ds = self.load(cfg, "dev", ["en"])["en"]
                what = f"MLQA en dev less its held-out part ({cfg.data.dir}; no SQuAD there)"
        rows = subset_indices(len(ds), cfg.english.max_examples, cfg.seed)
        if rows is not None:
            ds = ds.select(rows)
        return ds, f"{what}: {len(ds):,} questions"

    def english_data_key(self, cfg: RunConfig) -> dict[str, Any]:
        """Return the MLQA source and held-out split (offline, the English data is MLQA en dev less that part)."""
        return {"task_data": cfg.data.mlqa, "qa_split": [cfg.eval.qa_test, cfg.eval.qa_heldout_fraction]}

    def encode(self, dataset: Any, tokenizer: Any, cfg: RunConfig, train: bool) -> QAEncoded | QATrain:
        """Return the windows of `dataset`; training sets keep one window per question (the one with the answer)."""
        enc = encode_qa(dataset, tokenizer, cfg.model.max_length, cfg.model.doc_stride)
        return train_view(enc) if train else enc

    def encoded_from_arrays(self, arrays: Mapping[str, np.ndarray]) -> QAEncoded | QATrain:
        """Return the stored windows (a training view when it was one)."""
        return QATrain.from_arrays(arrays) if "train_windows" in arrays else QAEncoded.from_arrays(arrays)

    # The generic span extraction functions serve as this task's batches and loss as they are.
    collate = staticmethod(collate_train)
    collate_mixed = staticmethod(collate_mixed_qa)
    loss = staticmethod(qa_loss_fn)

    def score(self, model: torch.nn.Module, enc: QAEncoded, cfg: RunConfig, device: torch.device | str,
              pred_file: Path | None) -> dict[str, float]:
        """Return {"em", "f1"} in percent, writing {question id: answer} and per-question EM/F1 when `pred_file` is
        set."""
        preds = predict_qa(model, enc, cfg.eval.batch_size, device, cfg.eval.n_best, cfg.eval.max_answer_length)
        golds = dict(zip(enc.uids, enc.answers))
        if pred_file is not None:  # the official script's prediction format: {question id: answer text}
            write_text_whole(pred_file, json.dumps(preds, ensure_ascii=False, indent=0))
            per_question = question_scores(golds, preds, enc.lang)
            write_outcomes(outcome_path(pred_file), list(per_question),
                           {"em": [v[0] for v in per_question.values()], "f1": [v[1] for v in per_question.values()]})
        scores = evaluate_examples(golds, preds, enc.lang)
        return {"em": scores["exact_match"], "f1": scores["f1"]}

    def load_model(self, model_cfg: ModelConfig, source: str | None, seed: int, *,
                   tokenizer: bool = True, skip_bottom: int = 0) -> tuple[torch.nn.Module, Any]:
        """Return (span-extraction model, tokenizer or None)."""
        if source is None and model_cfg.name == "tiny":
            return build_tiny_qa_model(model_cfg, seed)
        return load_pretrained(AutoModelForQuestionAnswering, source or model_cfg.name, seed, tokenizer=tokenizer,
                               skip_bottom=skip_bottom)

    def data_split_key(self, cfg: RunConfig) -> dict[str, Any]:
        """Return the held-out split settings: offline, they (and the seed) decide which articles are test."""
        return {"qa_split": [cfg.eval.qa_test, cfg.eval.qa_heldout_fraction], "seed": cfg.seed}

    def _heldout_uids(self, cfg: RunConfig, lang: str) -> frozenset[str]:
        """Return the question ids of `lang`'s held-out articles, split once per language (every G-XLT pair with
        context `lang` needs them)."""
        key = (json.dumps(self.data_split_key(cfg)), cfg.data.mlqa, cfg.data.dir, lang)
        if key not in self._heldout:
            self._heldout[key] = frozenset(self.load(cfg, "test", [lang])[lang]["uid"])
        return self._heldout[key]

    def extra_eval_names(self, cfg: RunConfig, langs: list[str]) -> dict[str, list[str]]:
        """Return {"gxlt": every "<context>-<question>" pair of `langs`} when `eval.gxlt` is on, else {}."""
        return {"gxlt": [f"{c}-{q}" for c in langs for q in langs]} if cfg.eval.gxlt else {}

    def extra_eval_data(self, cfg: RunConfig, split: str, name: str) -> Any:
        """Return the test rows of the G-XLT pair `name` ("<context>-<question>") (possibly none)."""
        if split != "gxlt":
            raise KeyError(f"task mlqa has no extra split {split!r}")
        c, q = name.split("-")
        official = cfg.eval.qa_test == "official"
        ds = load_mlqa_pair(cfg.data.mlqa, "test" if official else "dev", c, q, cfg.data.dir)
        if not official:  # the held-out articles of the context language stand in for test
            keep = self._heldout_uids(cfg, c)
            ds = ds.select([i for i, uid in enumerate(ds["uid"]) if uid in keep])
        return ds

    def encode_extra(self, cfg: RunConfig, tokenizer: Any, split: str, name: str,
                     max_examples: int | None) -> QAEncoded | None:
        """Return the test data of the G-XLT pair `name` ("<context>-<question>"), or None when it has none."""
        ds = self.extra_eval_data(cfg, split, name)
        if not len(ds):
            return None
        return encode_qa(limit(ds, max_examples), tokenizer, cfg.model.max_length, cfg.model.doc_stride)
