"""Task names to Task objects: resolved once per run or trial (`get_task(cfg.task)`) and passed down."""

from __future__ import annotations

from xlamaml.trainables.errors import ConfigError
from xlamaml.trainables.tasks.base import Task
from xlamaml.trainables.tasks.mlqa import MLQATask
from xlamaml.trainables.tasks.xnli import XNLITask

TASK_CLASSES: dict[str, type[Task]] = {"xnli": XNLITask, "mlqa": MLQATask}


def get_task(name: str) -> Task:
    """Return the Task called `name` ("xnli" or "mlqa")."""
    if name not in TASK_CLASSES:
        raise ConfigError(f"config key task: expected one of {', '.join(TASK_CLASSES)}; got {name!r}")
    return TASK_CLASSES[name]()
