"""Results tables: the metrics JSONs of all runs, averaged over seeds, one row per configuration.

A configuration is (architecture, placement, depth, tasks), where ``tasks``
is the grouping name such as ``age+gender``. Each metric gets a mean column
(``age_mae``) and a standard-deviation column (``age_mae_std``, sample
standard deviation over seeds, NaN with one seed). ``delta_m`` is the
multitask gain in percent of the mean metrics against the mean metrics of
the grouping's no-sharing baseline (``facemtl.metrics.delta_m``).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from facemtl.metrics import delta_m
from facemtl.tasks import Task

log = logging.getLogger(__name__)

ARCHITECTURES = ("baseline", "hps", "cross_stitch")
PLACEMENTS = ("none", "normal", "backwards")
TASK_ORDER = ("age", "gender", "ethnicity")
METRIC_SUFFIXES = ("mse", "mae", "acc", "balanced_acc")
CONFIG_COLUMNS = ["architecture", "placement", "depth", "tasks"]
LEVELS = ("frame", "participant")
PARTICIPANT_PREFIX = "participant_"


def read_run_metrics(metrics_paths: Sequence[Path | str], level: str = "frame") -> tuple[pd.DataFrame, dict[str, list[Task]]]:
    """Read metrics JSONs into one row per run and the tasks of each grouping.

    Rows hold the configuration columns, ``seed``, ``dataset`` and the metrics
    of ``level``: frame metrics (plus the participant metrics prefixed
    ``participant_`` where a file has them) or participant metrics alone.
    A task counts as regression when its metrics include ``<task>_mae``.

    Raises ValueError for mixed datasets, a run that appears twice, or
    participant level requested of a file without participant metrics.
    """
    if level not in LEVELS:
        raise ValueError(f"invalid level {level!r}; expected one of {LEVELS}")

    records: list[dict[str, Any]] = []
    tasks_by_grouping: dict[str, list[Task]] = {}
    sources: dict[tuple, Path] = {}
    for path in map(Path, metrics_paths):
        with open(path) as handle:
            run = json.load(handle)
        record = _run_record(run, path, level)

        run_key = (*(record[column] for column in CONFIG_COLUMNS), record["seed"])
        if run_key in sources:
            raise ValueError(f"{path} and {sources[run_key]} describe the same run {run_key}; remove one of them")
        sources[run_key] = path

        metrics = run["metrics"] if level == "frame" else run["participants"]["metrics"]
        tasks_by_grouping.setdefault(record["tasks"], _tasks_from_metrics(run["tasks"], metrics))
        records.append(record)

    runs = pd.DataFrame.from_records(records)
    datasets = sorted(set(runs["dataset"].dropna())) if len(runs) else []
    if len(datasets) > 1:
        raise ValueError(f"metrics files mix datasets {datasets}; build one results table per dataset")
    return runs, tasks_by_grouping


def build_results_table(metrics_paths: Sequence[Path | str], level: str = "frame") -> pd.DataFrame:
    """Average the runs of each configuration over seeds and order rows as the thesis does.

    ``level`` is ``frame`` (frame metrics as the main columns, plus
    ``participant_`` columns and ``participant_delta_m`` for dyadic runs) or
    ``participant`` (participant metrics as the main columns). Rows come in
    the order baseline, HPS normal, HPS backwards, cross-stitch normal,
    cross-stitch backwards. Within each block the pairs (age+gender,
    age+ethnicity, gender+ethnicity) come first, then the triplet, and each
    grouping's rows are sorted by depth. Metrics a grouping does not have
    are NaN, and ``delta_m`` is NaN when the grouping has no baseline run.
    """
    runs, tasks_by_grouping = read_run_metrics(metrics_paths, level)
    if runs.empty:
        log.warning("no metrics files given, so the results table is empty")
        return pd.DataFrame(columns=[*CONFIG_COLUMNS, "n_runs", "delta_m"])

    metric_names = [column for column in runs.columns if column not in (*CONFIG_COLUMNS, "seed", "dataset")]
    frame_metrics = order_metric_columns([name for name in metric_names if not name.startswith(PARTICIPANT_PREFIX)])
    participant_names = [name.removeprefix(PARTICIPANT_PREFIX) for name in metric_names if name.startswith(PARTICIPANT_PREFIX)]
    participant_metrics = [PARTICIPANT_PREFIX + name for name in order_metric_columns(participant_names)]

    grouped = runs.groupby(CONFIG_COLUMNS, dropna=False, sort=False)
    means = grouped[frame_metrics + participant_metrics].mean()
    stds = grouped[frame_metrics + participant_metrics].std(ddof=1)
    table = pd.DataFrame(index=means.index)
    for name in frame_metrics + participant_metrics:
        table[name] = means[name]
        table[f"{name}_std"] = stds[name]
    table["n_runs"] = grouped.size()
    table = table.reset_index()

    table["delta_m"] = _delta_m_column(table, tasks_by_grouping, prefix="")
    if participant_metrics:
        table["participant_delta_m"] = _delta_m_column(table, tasks_by_grouping, prefix=PARTICIPANT_PREFIX)

    columns = [*CONFIG_COLUMNS]
    for name in frame_metrics:
        columns += [name, f"{name}_std"]
    columns += ["n_runs", "delta_m"]
    for name in participant_metrics:
        columns += [name, f"{name}_std"]
    if participant_metrics:
        columns.append("participant_delta_m")
    table = table[columns]
    table["n_runs"] = table["n_runs"].astype(int)
    table["depth"] = pd.to_numeric(table["depth"], errors="coerce").astype("Int64")
    return sort_configurations(table)


def order_metric_columns(names: Sequence[str]) -> list[str]:
    """Sort metric names by task (age, gender, ethnicity, then others by name) and then by metric."""

    # Longest suffix first, because "balanced_acc" also ends in "acc".
    suffixes = sorted(enumerate(METRIC_SUFFIXES), key=lambda item: -len(item[1]))

    def key(name: str) -> tuple:
        for rank, suffix in suffixes:
            if name.endswith(f"_{suffix}"):
                return (*_task_rank(name[: -len(suffix) - 1]), rank)
        return (len(TASK_ORDER) + 1, name, 0)

    return sorted(names, key=key)


def sort_configurations(table: pd.DataFrame) -> pd.DataFrame:
    """Order configuration rows by architecture, placement, grouping (pairs before triplets) and depth."""
    keys = pd.DataFrame(
        {
            "architecture": [_rank(value, ARCHITECTURES) for value in table["architecture"]],
            "placement": [_rank(value, PLACEMENTS) for value in table["placement"]],
            "tasks": [_grouping_rank(value) for value in table["tasks"]],
            "depth": pd.to_numeric(table["depth"], errors="coerce").fillna(-1).to_numpy(),
        },
        index=table.index,
    )
    order = sorted(table.index, key=lambda i: tuple(keys.loc[i]))
    return table.loc[order].reset_index(drop=True)


def write_results_table(df: pd.DataFrame, csv_path: Path | str, markdown_path: Path | str, latex_path: Path | str) -> None:
    """Write the table as CSV (full precision) and as Markdown and LaTeX (mean ± std, rounded).

    Accuracies and errors get 3 decimals and ``delta_m`` 2 decimals with a sign.
    A missing value prints as a dash.
    """
    for path in (csv_path, markdown_path, latex_path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(csv_path, index=False)

    Path(markdown_path).write_text(_display_table(df, plus_minus=" ± ", dash="–").to_markdown(index=False, disable_numparse=True) + "\n")

    latex = _display_table(df, plus_minus=r" $\pm$ ", dash="--")
    latex.columns = [column.replace("_", r"\_") for column in latex.columns]
    latex = latex.map(lambda value: value.replace("_", r"\_") if isinstance(value, str) and "$" not in value else value)
    Path(latex_path).write_text(latex.to_latex(index=False, escape=False))


def _run_record(run: dict[str, Any], path: Path, level: str) -> dict[str, Any]:
    missing = [key for key in ("architecture", "tasks", "metrics") if key not in run]
    if missing:
        raise ValueError(f"{path} lacks keys {missing}; regenerate it with facemtl.evaluate")

    architecture = run["architecture"]
    placement = run.get("placement") or ("none" if architecture == "baseline" else None)
    record: dict[str, Any] = {
        "architecture": architecture,
        "placement": placement,
        "depth": run.get("depth"),
        "tasks": "+".join(run["tasks"]),
        "seed": run.get("seed"),
        "dataset": run.get("dataset"),
    }

    if level == "participant":
        if "participants" not in run:
            raise ValueError(f"{path} has no participant metrics; participant level needs dyadic metrics files")
        record.update(_floats(run["participants"]["metrics"]))
        return record

    record.update(_floats(run["metrics"]))
    if "participants" in run:
        record.update({PARTICIPANT_PREFIX + key: value for key, value in _floats(run["participants"]["metrics"]).items()})
    return record


def _floats(metrics: dict[str, Any]) -> dict[str, float]:
    return {key: math.nan if value is None else float(value) for key, value in metrics.items()}


def _tasks_from_metrics(names: Sequence[str], metrics: dict[str, Any]) -> list[Task]:
    # The main metric only depends on regression versus classification, so binary stands for both.
    return [Task(name, "regression" if f"{name}_mae" in metrics else "binary", name) for name in names]


def _delta_m_column(table: pd.DataFrame, tasks_by_grouping: dict[str, list[Task]], prefix: str) -> np.ndarray:
    baselines = table[table["architecture"] == "baseline"].drop_duplicates("tasks").set_index("tasks")
    values = np.full(len(table), math.nan)
    for i, row in enumerate(table.itertuples(index=False)):
        if row.tasks not in baselines.index:
            continue
        tasks = tasks_by_grouping[row.tasks]
        current = {name.removeprefix(prefix): value for name, value in zip(table.columns, row) if name.startswith(prefix)}
        reference = {name.removeprefix(prefix): value for name, value in baselines.loc[row.tasks].items() if name.startswith(prefix)}
        values[i] = delta_m(current, reference, tasks)
    return values


def _rank(value: Any, known: Sequence[str]) -> tuple:
    return (known.index(value), "") if value in known else (len(known), str(value))


def _task_rank(task: str) -> tuple:
    return (TASK_ORDER.index(task), "") if task in TASK_ORDER else (len(TASK_ORDER), task)


def _grouping_rank(grouping: str) -> tuple:
    # Lexicographic task ranks give the thesis order age+gender, age+ethnicity, gender+ethnicity.
    tasks = str(grouping).split("+")
    return (len(tasks), tuple(_task_rank(task) for task in tasks))


def _display_table(df: pd.DataFrame, plus_minus: str, dash: str) -> pd.DataFrame:
    display = pd.DataFrame(index=df.index)
    for column in CONFIG_COLUMNS:
        display[column] = [_config_text(value, column, dash) for value in df[column]]

    for column in df.columns:
        if column in CONFIG_COLUMNS or column.endswith("_std"):
            continue
        if column == "n_runs":
            display[column] = df[column].astype(int).astype(str)
        elif column.endswith("delta_m"):
            display[column] = [dash if _missing(value) else f"{value:+.2f}" for value in df[column]]
        else:
            std_column = f"{column}_std"
            stds = df[std_column] if std_column in df.columns else pd.Series(math.nan, index=df.index)
            display[column] = [_mean_std(mean, std, plus_minus, dash) for mean, std in zip(df[column], stds)]
    return display


def _config_text(value: Any, column: str, dash: str) -> str:
    if _missing(value):
        return dash
    if column == "depth":
        return str(int(value))
    return str(value)


def _mean_std(mean: float, std: float, plus_minus: str, dash: str) -> str:
    if _missing(mean):
        return dash
    if _missing(std):
        return f"{mean:.3f}"
    return f"{mean:.3f}{plus_minus}{std:.3f}"


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, (float, np.floating)) and math.isnan(value))
