"""Task definitions: which label a task predicts, how, and with which loss.

Tasks come from the ``tasks`` section of the workflow config, so a new task
(emotion, say) needs a label column in the packs and a config entry, and no
model code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

TaskKind = Literal["regression", "binary", "multiclass"]


@dataclass(frozen=True)
class Task:
    """One prediction target of a multitask model.

    ``outputs`` is the width of the task's output layer: 1 for regression
    (a linear unit) and binary (one logit), ``classes`` for multiclass logits.
    """

    name: str
    kind: TaskKind
    column: str
    classes: int = 0
    loss: str = ""

    @property
    def outputs(self) -> int:
        return self.classes if self.kind == "multiclass" else 1

    @property
    def lower_is_better(self) -> bool:
        """True when the task's main metric is an error (regression), False for accuracies."""
        return self.kind == "regression"


DEFAULT_LOSSES = {"regression": "mse", "binary": "bce", "multiclass": "cross_entropy"}


def task_from_config(name: str, settings: dict[str, Any]) -> Task:
    """Build a Task from one entry of the config's ``tasks`` mapping."""
    kind = settings["kind"]
    classes = int(settings.get("classes", 2 if kind == "binary" else 0))
    if kind == "multiclass" and classes < 2:
        raise ValueError(f"task {name!r}: a multiclass task needs 'classes' of at least 2, got {classes}")
    return Task(
        name=name,
        kind=kind,
        column=settings.get("column", name),
        classes=classes,
        loss=settings.get("loss", DEFAULT_LOSSES[kind]),
    )


def tasks_for_grouping(grouping: list[str], task_settings: dict[str, dict[str, Any]]) -> list[Task]:
    """Return the Task of each name in ``grouping``, in grouping order."""
    missing = [name for name in grouping if name not in task_settings]
    if missing:
        raise ValueError(f"grouping {grouping} names tasks {missing} that the config's 'tasks' section does not define")
    return [task_from_config(name, task_settings[name]) for name in grouping]


def grouping_name(grouping: list[str]) -> str:
    """Return the grouping's name in paths and tables, the task names joined by '+'."""
    return "+".join(grouping)
