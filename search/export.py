"""`xlamaml export TRIAL --out DIR`: a finished trial's meta-trained model as a `save_pretrained` folder, with its
tokenizer and a model card (README.md) naming the assignment, seed, test scores and the base it came from, to load
anywhere with transformers' `from_pretrained`.

Only a trial that kept its final weights can be exported: a sweep run with `--set sweep.keep_final_checkpoint=true`
(by default a finished trial keeps only its final report, to save the storage). The checkpoint holds the weights
the meta stage trained; the rest are the base checkpoint's, which the sweep keeps among its assets. A trial with a
few-shot stage is exported as meta-trained: the few-shot stage runs on the targets at test time and is not stored.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import torch

from xlamaml.experiment import storage
from xlamaml.experiment.checkpoints import CHECKPOINT_FILE, checkpoints_in, read_state
from xlamaml.experiment.reports import RESULT_FILE, is_final, read_reports
from xlamaml.search.trainable import trial_data, trial_run_config
from xlamaml.trainables.errors import ExistingOutputError, InputError, MissingFileError
from xlamaml.trainables.tasks.registry import get_task


def final_weights(trial: str) -> dict[str, torch.Tensor]:
    """Return the meta-trained weights of a finished trial's newest checkpoint; MissingFileError naming the trial
    when none holds weights."""
    fs, path = storage.filesystem(trial)
    for found in checkpoints_in(fs, path):
        with tempfile.TemporaryDirectory(prefix="xlamaml-export-") as tmp:
            local = Path(tmp) / CHECKPOINT_FILE
            with fs.open_input_file(f"{found}/{CHECKPOINT_FILE}") as src:
                local.write_bytes(src.read())
            state = read_state(local)
        if "weights" in state and "final_metrics" not in state:
            return state["weights"]
    raise MissingFileError(f"{trial}: no checkpoint of this trial holds its final weights; expected a trial of a "
                           f"sweep run with --set sweep.keep_final_checkpoint=true (a finished trial otherwise keeps "
                           f"only its final report)")


def model_card(config: dict[str, Any], final: dict[str, Any], base: str) -> str:
    """Return the exported model's README.md: what it is, its assignment and seed, its test scores, its base."""
    trial = config.get("trial", {})
    scores = "\n".join(f"| {k.split('/')[1]} | {k.split('/')[2]} | {v:.4f} |" for k, v in sorted(final.items())
                       if k.startswith("test/") and isinstance(v, (int, float)))
    return (f"# xlamaml trial {trial.get('assignment', '?')}, seed {trial.get('seed', '?')}\n\n"
            f"A {config.get('task', '?')} model meta-trained by xlamaml ({config.get('method', '?')}, assignment "
            f"`{trial.get('assignment', '?')}`, seed {trial.get('seed', '?')}, {final.get('meta/steps', '?')} meta "
            f"steps) from the base checkpoint `{base}` (model `{config.get('model', {}).get('name', '?')}`). Load it "
            f"with transformers' `from_pretrained` on this folder.\n\n"
            f"## Test scores (the trial's final report)\n\n| target | metric | value |\n|---|---|---:|\n{scores}\n\n"
            f"## Config\n\n```json\n{json.dumps(config, indent=2, sort_keys=True, default=str)}\n```\n")


def export_trial(trial: str, out: str | Path, force: bool = False) -> Path:
    """Write the trial folder `trial`'s meta-trained model, tokenizer and model card to `out`; return `out`."""
    trial = storage.normalize(trial)
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise ExistingOutputError(f"{out}: not empty; choose another --out or pass --force to replace its files")
    params = storage.join(trial, "params.json")
    if not storage.exists(params):
        raise MissingFileError(f"{params}: not found; expected a trial folder of a sweep (it holds params.json)")
    try:
        config = json.loads(storage.read_bytes(params))
    except ValueError as e:
        raise InputError(f"{params}: malformed JSON ({e})") from None
    reports = read_reports(storage.join(trial, RESULT_FILE), warn=False)
    final = next((r for r in reversed(reports) if is_final(r)), None)
    if final is None:
        raise MissingFileError(f"{trial}: the trial has no final report (test scores); expected a finished trial")
    cfg = trial_run_config(config)
    task = get_task(cfg.task)
    weights = final_weights(trial)
    base, _ = trial_data(cfg, task)
    model, tokenizer = task.load_model(cfg.model, str(base), cfg.seed, tokenizer=True)
    params_of = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in weights.items():
            params_of[name].copy_(value)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    if tokenizer is not None and hasattr(tokenizer, "save_pretrained"):
        tokenizer.save_pretrained(out)
    (out / "README.md").write_text(model_card(config, final, cfg.base_checkpoint), encoding="utf-8")
    return out
