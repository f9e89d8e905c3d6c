"""The Ray Tune Trainable: one trial = meta stage (in chunks), optional few-shot stage, evaluation.

A trial's config is the nested RunConfig dict plus an optional `assignment` string (`trainables.assignment`) that
sets the method and languages. `setup` fetches the shared base checkpoint (`base_checkpoint`, an asset of the
sweep's storage) and the trial's tokenized data into the node's cache; the model never travels in the config or the
object store. Each `step` runs `meta.steps_per_report` meta steps and reports dev accuracy; the step that spends the
budget also reports test accuracy for every target and `done`. Checkpoints hold the meta-trained weights, optimizer,
schedule, sampler position and RNG, so a restored trial continues exactly where it stopped; a finished trial's last
checkpoint holds only its final report.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from xlamaml.experiment import assets, storage
from xlamaml.trainables.assignment import flat_trial
from xlamaml.experiment.reports import last_reported_iteration
from xlamaml.experiment.checkpoints import (CHECKPOINT_FILE, CheckpointError, checkpoint_iteration, checkpoints_in,
                                    other_checkpoints, read_state, write_iteration, write_state)
from xlamaml.search.cells import trial_config
from xlamaml.trainables.config import RunConfig
from xlamaml.trainables.errors import ConfigError, MissingFileError
from xlamaml.trainables.evaluate import add_averages, evaluate_sets
from xlamaml.trainables.models import apply_freezing
from xlamaml.trainables.data_source import (AssetSource, DataSource, TokenizingSource, data_key, dev_reports,
                                            needed_sets)
from xlamaml.trainables.feature_cache import cached_layers, ensure_local_features, feature_key, source_sets
from xlamaml.trainables.stages import (MetaState, advance_meta, meta_summary, read_features, score_test, setup_torch,
                               start_meta)
from xlamaml.trainables.tasks.base import Task
from xlamaml.trainables.tasks.registry import get_task

log = logging.getLogger("xlamaml")


def trial_run_config(config: dict[str, Any]) -> RunConfig:
    """Return the RunConfig of a trial (search.cells.trial_config), which must name its base checkpoint."""
    cfg = trial_config(config)
    if not cfg.base_checkpoint:
        raise ConfigError("config key base_checkpoint: a trial needs the English stage's directory "
                          "(the sweep builds it before any trial starts)")
    return cfg


def feature_location(cfg: RunConfig, task: Task) -> str:
    """Return where a sweep's feature-cache asset for trial config `cfg` is (named by its base asset and data)."""
    return storage.join(cfg.assets, f"features-{feature_key(cfg, task, assets.asset_name(cfg.base_checkpoint))}")


def trial_features(cfg: RunConfig, task: Task, model: torch.nn.Module, source: DataSource,
                   device: torch.device) -> Path:
    """Return the local folder of the trial's cached features: the sweep's asset fetched, or (a trial with no
    assets) built in the node's cache."""
    if cfg.assets:
        return assets.fetch(feature_location(cfg, task))
    return ensure_local_features(model, source_sets(source, needed_sets(cfg, task)), layers=cfg.meta.freeze_layers,
                                 dtype=cfg.meta.feature_dtype, batch_size=cfg.eval.batch_size, device=device)


def trial_data(cfg: RunConfig, task: Task) -> tuple[Path, DataSource | None]:
    """Return (the local base checkpoint, the data asset's source) of a trial; no source without `cfg.assets`."""
    if not cfg.assets:  # a sweep of an older layout, or a hand-made trial config: local paths, tokenize here
        base = Path(cfg.base_checkpoint)
        if not (base / "config.json").is_file():
            raise MissingFileError(f"{base}: base checkpoint not found (expected a save_pretrained directory)")
        return base, None
    base = assets.fetch(cfg.base_checkpoint)
    location = storage.join(cfg.assets, f"data-{data_key(cfg, task)}")
    folder = assets.fetch(location)
    return base, AssetSource(cfg, task, folder, assets.local_manifest(folder)["meta"], location)


def memory_use() -> dict[str, float]:
    """Return the trial process's peak resident memory (over the actor's life: a sweep reuses actors) and its
    anonymous (not file-backed) part now, in MB: the feature cache's memory map is file-backed, so it shows in the
    first and not in the second."""
    import resource

    out = {"trial/peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    out["trial/rss_anon_mb"] = int(line.split()[1]) / 1024
    except OSError:  # not Linux
        pass
    return out


class XlaMamlTrainable(tune.Trainable):
    """One XLA-MAML / X-MAML / baseline trial."""

    def setup(self, config: dict[str, Any]) -> None:
        """Load the base checkpoint and the trial's data (from the sweep's assets), and start the meta stage."""
        self.cfg = trial_run_config(config)
        self.keep_final = bool(config.get("keep_final_checkpoint", False))
        # An adaptive sweep's rung: {"index", "steps", "dev_items"}: the trial stops (paused, resumable) once its meta
        # stage reaches `steps`, and scores dev only then; None: the whole budget, dev at every report. A predictive
        # round adds "dev_at" (meta steps at which dev is scored on the way, kept per step count) and "test" (false:
        # pause at the full budget, test unscored, weights kept).
        self.rung: dict[str, Any] | None = flat_trial(config).get("rung")
        self.final_metrics: dict[str, Any] | None = None  # set once the trial is done: its last report
        self.device = setup_torch(self.cfg)
        self.task = get_task(self.cfg.task)  # resolved once per trial, passed to every stage
        base, source = trial_data(self.cfg, self.task)
        layers = cached_layers(self.cfg)
        # Trials reading the sweep's tokenized data need no tokenizer (it takes longer to load than the model), and
        # with the sweep's feature asset (named by config, not by the bottom's weights) no embeddings or bottom layers.
        self.model, self.tokenizer = self.task.load_model(self.cfg.model, str(base), self.cfg.seed,
                                                          tokenizer=source is None,
                                                          skip_bottom=layers if source is not None and layers else 0)
        self.model.to(self.device)
        self.source = source or TokenizingSource(self.cfg, self.task, self.tokenizer)
        if layers is not None:
            folder = trial_features(self.cfg, self.task, self.model, self.source, self.device)
            self.source = read_features(self.cfg, self.model, self.source, folder)
        self.meta: MetaState | None = None
        if self.cfg.method != "baseline":
            self.meta = start_meta(self.cfg, self.task, self.model, self.source)
        self.dev = dev_reports(self.source, self.cfg)
        # Restored at the first step, not here: Ray zeroes the iteration and time counters after `reset_config` (a
        # reused actor), which would renumber a continued trial's reports.
        resume_from = flat_trial(config).get("resume_from")
        self.pending_resume: str | None = str(resume_from) if resume_from else None

    def continue_from(self, folder: str) -> None:
        """Restore the newest readable checkpoint among the `checkpoint_*` folders in `folder` (a rebuilt run's trial:
        its checkpoints and result.json from before the rebuild) that is no newer than the reports kept there (Ray
        may have stored a checkpoint before the report of its iteration); with none, the trial starts from the base.
        Each fallback is one warning line."""
        fs, path = storage.filesystem(folder)
        last = last_reported_iteration(storage.join(folder, "result.json"))
        for found in checkpoints_in(fs, path):
            iteration = checkpoint_iteration(fs, found)
            if iteration is not None and iteration > last:
                continue
            try:
                tune.Trainable.restore(self, tune.Checkpoint(path=found, filesystem=fs))
            except CheckpointError as e:
                log.warning("trial checkpoint %s", " ".join(str(e).split()))
                continue
            log.warning("trial: continued from %s at iteration %d", found, self.iteration)
            return
        log.warning("trial: no readable checkpoint in %s up to its last report (iteration %d); starting from the base "
                    "checkpoint", folder, last)
        self._iteration, self._time_total, self._restored = 0, 0.0, False

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        """Return True after setting this actor up for the next trial (the sweep reuses actors: no new process, no
        new imports; Ray has already moved the working directory to the new trial's folder)."""
        self.setup(new_config)
        return True

    def step(self) -> dict[str, Any]:
        """Run the next `meta.steps_per_report` meta steps and return dev metrics (and test, once done)."""
        if self.pending_resume is not None:
            folder, self.pending_resume = self.pending_resume, None
            self.continue_from(folder)
        if self.final_metrics is not None:  # restored from the checkpoint of a finished trial: report it again
            return {**self.final_metrics, "done": True}
        cfg, rung = self.cfg, self.rung
        dev_point = None  # a predictive round's dev point: its outcomes go to predictions/steps-<n>/, kept
        if self.meta is not None:
            count = cfg.meta.steps_per_report
            if rung is not None:
                done = self.meta.learner.steps_done
                stop = min([int(rung["steps"])] + [int(s) for s in rung.get("dev_at", ()) if int(s) > done])
                count = min(count, max(0, stop - done))
            advance_meta(cfg, self.task, self.meta, count=count, device=self.device)
            if rung is not None and self.meta.learner.steps_done in [int(s) for s in rung.get("dev_at", ())]:
                dev_point = self.meta.learner.steps_done
            elif rung is not None and self.meta.learner.steps_done < int(rung["steps"]):
                # Inside a rung: no dev scores (the rule judges the rung's end only), a checkpoint all the same.
                return {**meta_summary(self.meta), "rung/index": rung["index"],
                        "node_id": ray.get_runtime_context().get_node_id()}
        # Dev predictions and per-item outcomes too (each report overwrites them, so they match the final dev
        # metrics): the analysis picks variants on dev with them.
        metrics: dict[str, Any] = evaluate_sets(self.task, self.model, self.dev, "dev", cfg, device=self.device,
                                                pred_dir=self._pred_dir(dev_point))
        metrics = add_averages(metrics, "dev", list(self.dev), aux_langs=cfg.aux_langs, names=self.task.metrics)
        if self.meta is not None:
            metrics.update(meta_summary(self.meta))
        # Which Ray node ran the trial: the cluster test and users spreading trials read it.
        metrics["node_id"] = ray.get_runtime_context().get_node_id()
        if rung is not None:
            metrics["rung/index"] = rung["index"]
        if self.meta is not None and rung is not None and self.meta.learner.steps_done < int(rung["steps"]):
            return metrics  # a dev point inside the round: the trial goes on
        if self.meta is not None and rung is not None and (not self.meta.done or not rung.get("test", True)):
            # The rung's budget is spent (a predictive round's full budget without test, too): the trial stops here,
            # its checkpoint kept for the next rung or for scoring test if it becomes a pick.
            metrics["rung/paused"] = True
            metrics["done"] = True
            return metrics
        if self.meta is None or self.meta.done:
            metrics.update(self._test())
            metrics.update(memory_use())
            metrics["done"] = True
            self.final_metrics = {k: v for k, v in metrics.items() if k != "done"}
        return metrics

    def _test(self) -> dict[str, float]:
        """Return test metrics of every target (after the few-shot stage when it is on)."""
        if self.meta is not None:
            apply_freezing(self.model, False, 0)
        return score_test(self.cfg, self.task, self.model, source=self.source, device=self.device,
                          pred_dir=self._pred_dir())

    def _pred_dir(self, steps: int | None = None) -> Path | None:
        """Return the trial's predictions folder (`steps`: its subfolder `steps-<n>` for a dev point of a predictive
        round, kept when later reports overwrite the others), or None when `eval.write_predictions` is off."""
        # The trial's working directory is its own folder (Ray changes into it).
        if not self.cfg.eval.write_predictions:
            return None
        return Path.cwd() / "predictions" / f"steps-{steps}" if steps is not None else Path.cwd() / "predictions"

    def restore(self, checkpoint_path: Any) -> None:
        """Restore from `checkpoint_path`; when it is gone (deleted after a newer one was written, just before the
        driver was killed) or cannot be read (cut short by a full disk or a lost node, or refused), from the trial's
        newest other checkpoint that can be; when none can, start again from the base checkpoint. Each fallback is
        one warning line naming the file."""
        # Ray's own checkpoint of this run is newer than those the trial continued from, which stay the fallback.
        pending, self.pending_resume = getattr(self, "pending_resume", None), None
        checkpoint = getattr(checkpoint_path, "checkpoint", checkpoint_path)
        if isinstance(checkpoint, (str, Path)):
            checkpoint = tune.Checkpoint.from_directory(str(checkpoint))
        try:
            super().restore(checkpoint_path)
            return
        except (ValueError, CheckpointError) as e:
            if not isinstance(e, CheckpointError) and "does not exist on storage" not in str(e):
                raise
            log.warning("trial checkpoint %s: %s", checkpoint.path,
                        "gone" if not isinstance(e, CheckpointError) else " ".join(str(e).split()))
        for path in other_checkpoints(checkpoint.filesystem, checkpoint.path):
            try:
                super().restore(tune.Checkpoint(path=path, filesystem=checkpoint.filesystem))
            except CheckpointError as e:
                log.warning("trial checkpoint %s", " ".join(str(e).split()))
                continue
            log.warning("trial restored from the earlier checkpoint %s instead of %s", path, checkpoint.path)
            return
        if pending is not None:  # a continued trial: the checkpoints it continued from
            log.warning("trial: no readable checkpoint beside %s; continuing from %s", checkpoint.path, pending)
            self.continue_from(pending)
            return
        log.warning("trial: no readable checkpoint beside %s; starting again from the base checkpoint",
                    checkpoint.path)
        self._iteration, self._time_total, self._restored = 0, 0.0, False

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        """Write the trial's state: meta-trained weights, optimizer, schedule, sampler, RNG (or, once done, its
        final report only, unless `sweep.keep_final_checkpoint`)."""
        # The iteration too: a restore from another checkpoint than Ray's snapshot names must not renumber reports.
        state: dict[str, Any] = {"rng": torch.get_rng_state(), "iteration": self.iteration}
        if self.final_metrics is not None and not self.keep_final:
            # A finished trial is never trained again: its weights would only fill the storage (246 MB a demo
            # trial, ~2 GB with mBERT). The report lets a resume that restores it finish without retraining.
            state["final_metrics"] = self.final_metrics
        elif self.meta is not None:
            # Only the weights the meta stage trains: frozen ones equal the base checkpoint, which
            # `setup` loads anyway (with frozen embeddings this is 21M instead of 118M parameters).
            state["weights"] = {n: p.detach().cpu() for n, p in self.meta.learner.params.items()}
            state["learner"] = self.meta.learner.state_dict()
            state["sampler"] = self.meta.sampler.state_dict()
            state["query_losses"] = self.meta.query_losses
            state["seconds"] = self.meta.seconds
        write_state(state, os.path.join(checkpoint_dir, CHECKPOINT_FILE))
        write_iteration(checkpoint_dir, self.iteration)

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        """Restore what `save_checkpoint` wrote (tensors and plain values only: loading runs no code; a file that is cut
        short or holds anything else raises CheckpointError and changes nothing)."""
        state = read_state(os.path.join(checkpoint_dir, CHECKPOINT_FILE))
        torch.set_rng_state(state["rng"])
        if "iteration" in state:
            self._iteration = state["iteration"]
        if "final_metrics" in state:
            self.final_metrics = dict(state["final_metrics"])
            return
        if self.meta is not None:
            with torch.no_grad():
                for name, value in state["weights"].items():
                    self.meta.learner.params[name].copy_(value)
            self.meta.learner.load_state_dict(state["learner"])
            self.meta.sampler.load_state_dict(state["sampler"])
            self.meta.query_losses = list(state["query_losses"])
            self.meta.seconds = state["seconds"]
