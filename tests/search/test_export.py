"""`xlamaml export`: a trial that kept its final weights becomes a save_pretrained folder that transformers loads,
with the trained weights and a model card; a trial without them is one line naming what to set."""

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from xlamaml.cli import main, preset_path
from xlamaml.search.export import final_weights
from xlamaml.search.spec import load_sweep
from xlamaml.search.sweep import run_sweep


def test_export_writes_a_loadable_model_with_its_trained_weights_and_card(tmp_path, cache, ray_local, capsys):
    sw = load_sweep(preset_path("smoke"), ['sweep.assignments.items=[baseline,"x-maml:hi"]',
                                           "sweep.keep_final_checkpoint=true"])
    exp = Path(run_sweep(sw, tmp_path / "runs", "kept"))
    trial = next(d for d in exp.iterdir() if d.name.startswith("x-maml_hi_s0"))
    out = tmp_path / "model"
    assert main(["-q", "export", str(trial), "--out", str(out)]) == 0
    capsys.readouterr()  # what the export printed (its folder, a writer's progress bar)
    assert {"config.json", "model.safetensors", "README.md"} <= {p.name for p in out.iterdir()}
    card = (out / "README.md").read_text()
    assert "x-maml:hi" in card and "seed 0" in card and "| hi | acc |" in card
    loaded = dict(AutoModelForSequenceClassification.from_pretrained(out).named_parameters())
    trained = final_weights(str(trial))
    assert trained and all(torch.equal(loaded[name], value) for name, value in trained.items())
    # the baseline trained nothing: no weights to export, and the message says what to set
    baseline = next(d for d in exp.iterdir() if d.name.startswith("baseline_s0"))
    assert main(["-q", "export", str(baseline), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("xlamaml: error:") and "sweep.keep_final_checkpoint=true" in err and "\n" not in err
    # an export never writes into a folder holding something
    assert main(["-q", "export", str(trial), "--out", str(out)]) == 2
    with pytest.raises(SystemExit):
        main(["export"])
