"""Evaluation metrics for the tasks of a multitask model.

Everything here is plain numpy and pandas on arrays that are already in
memory, so the functions serve the evaluation stage, the results tables and
the tests alike.

Prediction arrays follow ``facemtl.predict.predict``. A regression task gets
the predicted value in the label's unit, shape (N,). A binary task gets the
probability of class 1, shape (N,). A multiclass task gets the class
probabilities, shape (N, C).

Metric keys are ``<task>_mse`` and ``<task>_mae`` for regression tasks and
``<task>_acc`` and ``<task>_balanced_acc`` for binary and multiclass tasks.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from facemtl.packed import ETHNICITIES, GENDERS
from facemtl.tasks import Task

log = logging.getLogger(__name__)

BINARY_THRESHOLD = 0.5
"""A binary prediction is class 1 when its probability is at least this value."""

GROUP_COLUMNS: dict[str, tuple[str, ...]] = {"gender": GENDERS, "ethnicity": ETHNICITIES}
"""Label columns that the group breakdown splits on, with the name of each code."""


def mse(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Return the mean squared error, in squared label units; NaN for empty input."""
    truth, predicted = _as_float_pair(truth, predicted)
    if truth.size == 0:
        return math.nan
    return float(np.mean((predicted - truth) ** 2))


def mae(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Return the mean absolute error, in label units; NaN for empty input."""
    truth, predicted = _as_float_pair(truth, predicted)
    if truth.size == 0:
        return math.nan
    return float(np.mean(np.abs(predicted - truth)))


def accuracy(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Return the share of predicted class labels equal to the true ones, in [0, 1]; NaN for empty input."""
    truth, predicted = _as_label_pair(truth, predicted)
    if truth.size == 0:
        return math.nan
    return float(np.mean(truth == predicted))


def balanced_accuracy(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Return the mean recall over the classes present in ``truth``, in [0, 1]; NaN for empty input.

    Classes that occur only among the predictions do not count, which matches
    ``sklearn.metrics.balanced_accuracy_score``.
    """
    truth, predicted = _as_label_pair(truth, predicted)
    if truth.size == 0:
        return math.nan
    recalls = [np.mean(predicted[truth == label] == label) for label in np.unique(truth)]
    return float(np.mean(recalls))


def predicted_labels(task: Task, prediction: np.ndarray) -> np.ndarray:
    """Turn a classification task's probabilities into class labels (N,) int.

    Binary: probability of class 1 at or above ``BINARY_THRESHOLD`` gives 1.
    Multiclass: the class of maximum probability, the lower index on ties.
    """
    prediction = np.asarray(prediction, dtype=np.float64)
    if task.kind == "binary":
        if prediction.ndim != 1:
            raise ValueError(f"task {task.name!r}: binary predictions must have shape (N,), got {prediction.shape}")
        return (prediction >= BINARY_THRESHOLD).astype(np.int64)
    if task.kind == "multiclass":
        if prediction.ndim != 2 or prediction.shape[1] != task.classes:
            raise ValueError(
                f"task {task.name!r}: multiclass predictions must have shape (N, {task.classes}), got {prediction.shape}"
            )
        return prediction.argmax(axis=1).astype(np.int64)
    raise ValueError(f"task {task.name!r} is a {task.kind} task and has no class labels")


def task_metrics(tasks: Sequence[Task], truth: pd.DataFrame, predictions: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Compute every metric of every task over all rows of ``truth``.

    ``truth`` contains each task's label column (``Task.column``), and
    ``predictions[task.name]`` has one entry per row of ``truth``, in the same
    order. With zero rows every metric is NaN.
    """
    metrics: dict[str, float] = {}
    for task in tasks:
        labels = _truth_column(task, truth)
        prediction = _prediction_for(task, predictions, len(truth))

        if task.kind == "regression":
            metrics[f"{task.name}_mse"] = mse(labels, prediction)
            metrics[f"{task.name}_mae"] = mae(labels, prediction)
        else:
            decided = predicted_labels(task, prediction)
            metrics[f"{task.name}_acc"] = accuracy(labels, decided)
            metrics[f"{task.name}_balanced_acc"] = balanced_accuracy(labels, decided)
    return metrics


def group_metrics(
    tasks: Sequence[Task], truth: pd.DataFrame, predictions: Mapping[str, np.ndarray]
) -> dict[str, float | int]:
    """Compute ``task_metrics`` within each gender and each ethnicity group.

    Keys are ``<metric>@<column>=<group>`` (for example
    ``age_mae@ethnicity=Black``) plus ``n@<column>=<group>``, the number of
    rows in the group. Every group of ``GROUP_COLUMNS`` appears, so runs can be
    compared key by key; a group without rows has n = 0 and NaN metrics. A
    group column that ``truth`` lacks is left out with a warning, and rows
    whose group code is missing or unknown are counted in
    ``n@<column>=unknown`` when there are any.
    """
    groups: dict[str, float | int] = {}
    for column, names in GROUP_COLUMNS.items():
        if column not in truth.columns:
            log.warning("labels have no %r column, so the breakdown by %s is left out", column, column)
            continue

        codes = pd.to_numeric(truth[column], errors="coerce").to_numpy()
        known = np.zeros(len(truth), dtype=bool)
        for code, name in enumerate(names):
            mask = codes == code
            known |= mask
            subset = {name_: np.asarray(value)[mask] for name_, value in predictions.items()}
            for key, value in task_metrics(tasks, truth.loc[mask], subset).items():
                groups[f"{key}@{column}={name}"] = value
            groups[f"n@{column}={name}"] = int(mask.sum())

        unknown = int((~known).sum())
        if unknown:
            log.warning("%d rows have a missing or unknown %s code and belong to no %s group", unknown, column, column)
            groups[f"n@{column}=unknown"] = unknown
    return groups


def aggregate_by_participant(
    tasks: Sequence[Task],
    truth: pd.DataFrame,
    predictions: Mapping[str, np.ndarray],
    key: str = "participant_id",
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Merge each participant's frames into one prediction per participant.

    Regression predictions are averaged. Class probabilities are averaged too,
    so the participant's class is the argmax (multiclass) or the 0.5 threshold
    (binary) of the mean probabilities. Returns the participants' truth, one
    row each and sorted by ``key``, and the matching prediction arrays.

    Raises ValueError when ``key`` is missing or a participant's frames carry
    different labels, because then the participant has no single truth.
    """
    if key not in truth.columns:
        raise ValueError(f"labels have no {key!r} column, so frames cannot be grouped by participant")

    if truth[key].isna().any():
        raise ValueError(f"{int(truth[key].isna().sum())} rows have no {key!r}; every frame must name its participant")
    participant_ids = truth[key].to_numpy()
    order = pd.Index(sorted(pd.unique(participant_ids)))
    positions = order.get_indexer(participant_ids)
    counts = np.bincount(positions, minlength=len(order)).astype(np.float64)

    label_columns = list(dict.fromkeys(task.column for task in tasks))
    participant_truth = truth[[key, *label_columns]].groupby(key, sort=True).agg(["first", "nunique"])
    for column in label_columns:
        conflicting = participant_truth.index[participant_truth[(column, "nunique")] > 1]
        if len(conflicting):
            raise ValueError(
                f"participants {list(conflicting)} have frames with different {column!r} labels; "
                "fix the participant table so each participant has one label"
            )
    participant_truth = participant_truth.xs("first", axis=1, level=1).reset_index()

    merged: dict[str, np.ndarray] = {}
    for task in tasks:
        prediction = _prediction_for(task, predictions, len(truth))
        sums = np.zeros((len(order), *prediction.shape[1:]))
        np.add.at(sums, positions, prediction)
        merged[task.name] = sums / counts.reshape(-1, *[1] * (prediction.ndim - 1))
    return participant_truth, merged


def participant_metrics(
    tasks: Sequence[Task],
    truth: pd.DataFrame,
    predictions: Mapping[str, np.ndarray],
    key: str = "participant_id",
) -> tuple[int, dict[str, float]]:
    """Return the number of participants and ``task_metrics`` over participants (see ``aggregate_by_participant``)."""
    participant_truth, merged = aggregate_by_participant(tasks, truth, predictions, key)
    return len(participant_truth), task_metrics(tasks, participant_truth, merged)


def main_metric(task: Task) -> str:
    """Return the key of the task's main metric: MAE for regression, accuracy otherwise."""
    return f"{task.name}_mae" if task.kind == "regression" else f"{task.name}_acc"


def delta_m(metrics: Mapping[str, float], baseline: Mapping[str, float], tasks: Sequence[Task]) -> float:
    """Return the multitask gain of ``metrics`` over ``baseline``, in percent.

    Delta_m = 100 / T * sum_t (-1)^l_t (M_t - B_t) / B_t over the T tasks,
    where M_t and B_t are the main metrics (``main_metric``) and l_t is 1 when
    lower is better (Maninis et al., CVPR 2019; Vandenhende et al., TPAMI
    2021). A model better than the baseline on every task gets Delta_m > 0.
    NaN when a main metric is missing or NaN, or a baseline value is 0.
    """
    if not tasks:
        raise ValueError("Delta_m needs at least one task")

    total = 0.0
    for task in tasks:
        key = main_metric(task)
        value = float(metrics.get(key, math.nan))
        reference = float(baseline.get(key, math.nan))
        if math.isnan(value) or math.isnan(reference) or reference == 0.0:
            return math.nan
        sign = -1.0 if task.lower_is_better else 1.0
        total += sign * (value - reference) / reference
    return 100.0 * total / len(tasks)


def _as_float_pair(truth: np.ndarray, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    truth = np.asarray(truth, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    if truth.shape != predicted.shape:
        raise ValueError(f"truth has shape {truth.shape} but predictions have shape {predicted.shape}")
    return truth, predicted


def _as_label_pair(truth: np.ndarray, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    truth = np.asarray(truth)
    predicted = np.asarray(predicted)
    if truth.shape != predicted.shape:
        raise ValueError(f"truth has shape {truth.shape} but predictions have shape {predicted.shape}")
    return truth.astype(np.int64), predicted.astype(np.int64)


def _truth_column(task: Task, truth: pd.DataFrame) -> np.ndarray:
    if task.column not in truth.columns:
        raise ValueError(f"task {task.name!r} needs label column {task.column!r}, but the labels have {list(truth.columns)}")
    values = pd.to_numeric(truth[task.column], errors="coerce")
    missing = int(values.isna().sum())
    if missing:
        raise ValueError(
            f"label column {task.column!r} of task {task.name!r} has {missing} missing or non-numeric values; "
            "complete the labels or leave those rows out of the pack"
        )
    return values.to_numpy()


def _prediction_for(task: Task, predictions: Mapping[str, np.ndarray], rows: int) -> np.ndarray:
    if task.name not in predictions:
        raise ValueError(f"no predictions for task {task.name!r}; predictions exist for {sorted(predictions)}")
    prediction = np.asarray(predictions[task.name], dtype=np.float64)
    if len(prediction) != rows:
        raise ValueError(f"task {task.name!r} has {len(prediction)} predictions for {rows} label rows")
    if task.kind == "multiclass" and (prediction.ndim != 2 or prediction.shape[1] != task.classes):
        raise ValueError(
            f"task {task.name!r}: multiclass predictions must have shape (N, {task.classes}), got {prediction.shape}"
        )
    return prediction
