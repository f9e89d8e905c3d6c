"""Mixed precision: bf16 forward passes give meta-gradients close to fp32 ones; the setting reaches every stage.
(The exact comparison with `higher` stays in fp32: tests/trainables/test_maml.py.)"""

import pytest
import torch

from xlamaml.cli import PRESETS
from tests.trainables.test_maml import batches, tiny
from xlamaml.trainables.config import load_config
from xlamaml.trainables.english_stage import english_stage_key
from xlamaml.trainables.maml import meta_gradients
from xlamaml.trainables.precision import autocast_dtype, native_bf16, with_autocast
from xlamaml.trainables.tasks.nli import loss_fn
from xlamaml.trainables.tasks.registry import get_task

pytestmark = pytest.mark.usefixtures("one_thread")


def flat(grads: dict) -> torch.Tensor:
    return torch.cat([g.flatten() for _, g in sorted(grads.items())])


@pytest.mark.parametrize("first_order", [True, False])
def test_bf16_meta_gradients_agree_with_fp32(first_order):
    model, tok = tiny()
    support, query = batches(tok)
    params = {n: p for n, p in model.named_parameters()}
    cpu = torch.device("cpu")
    fp32 = meta_gradients(model, params, support, query, loss_fn, 0.5, 1, first_order)
    bf16 = meta_gradients(model, params, support, query, with_autocast(loss_fn, torch.bfloat16, cpu), 0.5, 1,
                          first_order)
    a, b = flat(fp32.grads), flat(bf16.grads)
    assert b.dtype == torch.float32  # gradients (and so weights and optimizer state) stay fp32
    cosine = torch.nn.functional.cosine_similarity(a, b, dim=0).item()
    assert cosine >= 0.99, cosine
    assert not torch.equal(a, b)  # bf16 did run: the numbers differ a little


def test_precision_settings_resolve():
    cpu = torch.device("cpu")
    assert autocast_dtype("fp32", cpu) is None and autocast_dtype("bf16", cpu) is torch.bfloat16
    assert autocast_dtype("auto", cpu) is (torch.bfloat16 if native_bf16(cpu) else None)
    fp32, bf16 = load_config(PRESETS / "smoke.yaml"), load_config(PRESETS / "smoke.yaml", ["precision=bf16"])
    xnli = get_task("xnli")
    assert english_stage_key(fp32, xnli) != english_stage_key(bf16, xnli)  # other weights, another cache entry


def test_a_bf16_run_scores_like_fp32(tmp_path, cache):
    """The smoke run end to end in bf16 (English stage, meta stage, evaluation): it predicts as fp32 nearly always."""
    from xlamaml.trainables.stages import run

    runs = {p: run(load_config(PRESETS / "smoke.yaml", [f"precision={p}", "eval.target_langs=en,hi"]), tmp_path / p)
            for p in ("fp32", "bf16")}
    preds = {p: (tmp_path / p / "predictions" / "test-hi.tsv").read_text().splitlines() for p in runs}
    same = sum(a == b for a, b in zip(preds["fp32"], preds["bf16"])) / len(preds["fp32"])
    assert same >= 0.9, same
    assert runs["bf16"]["meta/steps"] == runs["fp32"]["meta/steps"]
