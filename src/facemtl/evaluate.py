"""Evaluation of one trained model on one pack: a predictions table and a metrics JSON.

The predictions CSV has one row per evaluated image. Its columns are ``row``
(the image's index in the pack), every column of the pack's labels.csv
(identifiers and truths), and the predictions of each task. ``<task>_pred``
is the predicted value for regression (years for age) and the decided class
for classification. Binary tasks add ``<task>_prob``, the probability of
class 1, and multiclass tasks add ``<task>_prob_<k>``, the probability of
class k.

The metrics JSON stores the run's configuration next to its metrics; NaN
values are written as null so that the file is strict JSON::

    {"dataset", "split", "grouping", "architecture", "placement", "depth",
     "seed", "tasks": [names], "n", "metrics": {...}, "groups": {...},
     "participants": {"n", "metrics"}}   # "participants" for dyadic only
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from facemtl.metrics import group_metrics, participant_metrics, predicted_labels, task_metrics
from facemtl.models import tasks_from_settings
from facemtl.packed import read_pack
from facemtl.predict import load_model, predict
from facemtl.tasks import Task, grouping_name
from facemtl.train import resolve_device

log = logging.getLogger(__name__)

DATASETS = ("utk", "dyadic")

CHUNK_ROWS = 2048
"""Images copied out of the memory-mapped pack at once, so memory stays bounded for large test splits."""


def evaluate_run(
    checkpoint: Path,
    images: Path,
    labels: Path,
    predictions_path: Path,
    metrics_path: Path,
    dataset: str,
    split: str | None,
    batch_size: int = 256,
    device: str = "cpu",
    threads: int = 1,
) -> None:
    """Predict every selected image of a pack with one checkpoint and write predictions and metrics.

    ``dataset`` is ``utk`` or ``dyadic`` and ``device`` is auto, cpu or cuda. With ``split`` set, only rows whose
    ``split`` column equals it are evaluated; with None, every row is. Dyadic
    runs also get participant-level metrics. An empty selection is an error,
    except for a dyadic pack without faces, which gets n = 0, NaN metrics and
    a warning.
    """
    if dataset not in DATASETS:
        raise ValueError(f"invalid dataset {dataset!r}; expected one of {DATASETS}")
    torch.set_num_threads(threads)
    started = time.perf_counter()

    device = str(resolve_device(device))
    model, settings = load_model(Path(checkpoint), device=device)
    tasks = tasks_from_settings(settings)
    pack_images, pack_labels = read_pack(images, labels)
    rows = select_rows(pack_labels, split, labels)
    if len(rows) == 0:
        if dataset != "dyadic":
            raise ValueError(f"{labels}: no rows to evaluate for split {split!r}; rebuild the pack with a non-empty {split} split")
        log.warning("%s has no face images, so every metric of %s is NaN", labels, checkpoint)
    log.info("evaluating %s on %d images of %s (split %s)", checkpoint, len(rows), images, split)

    predictions = predict_rows(model, settings, tasks, pack_images, rows, batch_size=batch_size, device=device)
    truth = pack_labels.iloc[rows].reset_index(drop=True)
    table = prediction_table(tasks, truth, rows, predictions)
    summary = summarize_run(tasks, settings, truth, predictions, dataset, split)

    Path(predictions_path).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(predictions_path, index=False)
    write_metrics(summary, metrics_path)
    log.info(
        "wrote %s and %s in %.1f s: %s",
        predictions_path,
        metrics_path,
        time.perf_counter() - started,
        ", ".join(f"{key} {value:.4g}" for key, value in summary["metrics"].items()),
    )


def select_rows(labels: pd.DataFrame, split: str | None, source: Path | str = "labels") -> np.ndarray:
    """Return the pack row indices to evaluate: all rows, or those whose ``split`` column equals ``split``."""
    if split is None:
        return np.arange(len(labels))
    if "split" not in labels.columns:
        raise ValueError(f"{source} has no 'split' column, so split {split!r} cannot be selected; evaluate with split None")
    return np.flatnonzero(labels["split"].astype(str).to_numpy() == split)


def predict_rows(
    model: torch.nn.Module,
    settings: Mapping[str, Any],
    tasks: Sequence[Task],
    images: np.ndarray,
    rows: np.ndarray,
    batch_size: int = 256,
    device: str = "cpu",
) -> dict[str, np.ndarray]:
    """Predict the images at ``rows`` in chunks of ``CHUNK_ROWS`` and join the outputs.

    Returns per task an array of len(rows) entries, shaped as
    ``facemtl.predict.predict`` returns them. With no rows the model is not
    called, and the arrays are empty with the right trailing shape.
    """
    chunks: list[dict[str, np.ndarray]] = []
    for start in range(0, len(rows), CHUNK_ROWS):
        batch = np.asarray(images[rows[start : start + CHUNK_ROWS]])
        chunks.append(predict(model, dict(settings), batch, batch_size=batch_size, device=device))

    predictions: dict[str, np.ndarray] = {}
    for task in tasks:
        if chunks:
            predictions[task.name] = np.concatenate([chunk[task.name] for chunk in chunks])
        elif task.kind == "multiclass":
            predictions[task.name] = np.zeros((0, task.classes))
        else:
            predictions[task.name] = np.zeros(0)
    return predictions


def prediction_table(
    tasks: Sequence[Task], truth: pd.DataFrame, rows: np.ndarray, predictions: Mapping[str, np.ndarray]
) -> pd.DataFrame:
    """Return the predictions CSV's table: ``row``, the label columns, then each task's prediction columns."""
    table = truth.reset_index(drop=True).copy()
    table.insert(0, "row", np.asarray(rows, dtype=np.int64))

    for task in tasks:
        prediction = np.asarray(predictions[task.name], dtype=np.float64)
        if task.kind == "regression":
            table[f"{task.name}_pred"] = prediction
            continue
        table[f"{task.name}_pred"] = predicted_labels(task, prediction)
        if task.kind == "binary":
            table[f"{task.name}_prob"] = prediction
        else:
            for k in range(task.classes):
                table[f"{task.name}_prob_{k}"] = prediction[:, k]
    return table


def predictions_from_table(tasks: Sequence[Task], table: pd.DataFrame) -> dict[str, np.ndarray]:
    """Read the per-task prediction arrays back from a predictions table (the inverse of ``prediction_table``)."""
    predictions: dict[str, np.ndarray] = {}
    for task in tasks:
        if task.kind == "regression":
            columns = [f"{task.name}_pred"]
        elif task.kind == "binary":
            columns = [f"{task.name}_prob"]
        else:
            columns = [f"{task.name}_prob_{k}" for k in range(task.classes)]

        missing = [column for column in columns if column not in table.columns]
        if missing:
            raise ValueError(f"predictions table lacks columns {missing} of task {task.name!r}")
        values = table[columns].to_numpy(dtype=np.float64)
        predictions[task.name] = values if task.kind == "multiclass" else values[:, 0]
    return predictions


def summarize_run(
    tasks: Sequence[Task],
    settings: Mapping[str, Any],
    truth: pd.DataFrame,
    predictions: Mapping[str, np.ndarray],
    dataset: str,
    split: str | None,
) -> dict[str, Any]:
    """Return the metrics JSON's content for one run (see the module docstring)."""
    grouping = settings.get("grouping", [task.name for task in tasks])
    summary: dict[str, Any] = {
        "dataset": dataset,
        "split": split,
        "grouping": grouping if isinstance(grouping, str) else grouping_name(list(grouping)),
        "architecture": settings.get("architecture"),
        "placement": settings.get("placement"),
        "depth": settings.get("depth"),
        "seed": settings.get("seed"),
        "tasks": [task.name for task in tasks],
        "n": len(truth),
        "metrics": task_metrics(tasks, truth, predictions),
        "groups": group_metrics(tasks, truth, predictions),
    }
    if dataset == "dyadic":
        n_participants, metrics = participant_metrics(tasks, truth, predictions)
        summary["participants"] = {"n": n_participants, "metrics": metrics}
    return summary


def write_metrics(summary: Mapping[str, Any], path: Path | str) -> None:
    """Write a run summary as strict JSON, with NaN as null."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        json.dump(_to_json(summary), handle, indent=2, allow_nan=False)
        handle.write("\n")


def _to_json(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(key): _to_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json(item) for item in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    return value
