"""What the config needs to know of each task, without loading the task's code (no torch, no transformers).

The `Task` implementations (`trainables.tasks.xnli`, `trainables.tasks.mlqa`) take their name, languages,
metrics and default meta budget from here, so each fact has one home.
"""

from __future__ import annotations

from dataclasses import dataclass

from xlamaml.trainables.languages import MLQA_LANGS, XNLI_LANGS


@dataclass(frozen=True)
class TaskSpec:
    """The static facts of one task."""

    name: str
    langs: tuple[str, ...]  # every language the task's data holds; the default targets
    metrics: tuple[str, ...]  # reported per language; the first is the headline metric
    meta_steps_per_query_lang: int  # the paper's meta budget (section 4.2)
    has_gxlt: bool = False  # a context language x question language matrix (MLQA's G-XLT)
    prediction_suffix: str = ".tsv"


TASK_SPECS: dict[str, TaskSpec] = {
    "xnli": TaskSpec("xnli", XNLI_LANGS, ("acc",), meta_steps_per_query_lang=500),
    "mlqa": TaskSpec("mlqa", MLQA_LANGS, ("f1", "em"), meta_steps_per_query_lang=100, has_gxlt=True,
                     prediction_suffix=".json"),
}
TASKS = tuple(TASK_SPECS)
