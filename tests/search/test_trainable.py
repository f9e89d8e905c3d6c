"""A sweep trial on the feature cache loads only the layers it runs, and trains exactly as from the whole model."""

import numpy as np
import torch

from xlamaml.cli import preset_path
from xlamaml.experiment import storage
from xlamaml.search.spec import load_sweep
from xlamaml.search.sweep_assets import prepare_assets
from xlamaml.search.trainable import XlaMamlTrainable
from xlamaml.trainables import top_layers
from xlamaml.trainables.config_parsing import merge


def test_a_cached_trial_loads_only_its_top_layers_and_trains_as_the_whole_model_did(tmp_path, monkeypatch):
    monkeypatch.setenv("XLAMAML_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)  # a trial writes its predictions into its working directory, as under Ray
    sw = load_sweep(preset_path("smoke"), overrides=["meta.freeze_embeddings=true", "meta.freeze_layers=1",
                                                     "english.epochs=1"])
    run = prepare_assets(sw, storage.join(str(tmp_path), "exp", "assets"), remote=False)
    trial = merge(run, {"assignment": "xla-maml:en>hi", "seed": 42, "threads": 1})

    loaded = []
    real = top_layers.load_top
    monkeypatch.setattr(top_layers, "load_top", lambda *a, **k: loaded.append(real(*a, **k)) or loaded[-1])
    top = XlaMamlTrainable(trial)
    assert len(loaded) == 1 and loaded[0] is not None
    assert not any(".embeddings." in n or ".layer.0." in n for n, _ in top.model.named_parameters())
    reports = [top.train()]  # set up and trained one after the other: each trial seeds the RNG in its setup

    monkeypatch.setattr(top_layers, "load_top", lambda *a, **k: None)  # the whole model, as before
    whole = XlaMamlTrainable(trial)
    reports.append(whole.train())
    keys = [k for k in reports[0] if k.startswith(("dev/", "meta/")) and "seconds" not in k
            and isinstance(reports[0][k], float)]
    assert keys and all(np.isclose(reports[0][k], reports[1][k], rtol=0, atol=0) for k in keys)
    for name, p in top.model.named_parameters():
        assert torch.equal(p, dict(whole.model.named_parameters())[name]), name
