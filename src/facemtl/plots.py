"""Figures of the analysis notebooks, drawn from results tables (facemtl.tables) and training histories.

Every figure function returns a matplotlib Figure. Where data is missing
(an empty table, an absent architecture or grouping, no histories), the panel
shows a "no data ..." note instead of raising, so the workflow's declared
figure files exist for any results table. The main metric of a task is MAE in
years for regression tasks and accuracy in percent otherwise.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402 (the backend must be chosen first)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from facemtl.packed import ETHNICITIES, GENDERS  # noqa: E402
from facemtl.tables import TASK_ORDER, sort_configurations  # noqa: E402

log = logging.getLogger(__name__)

RESULT_FIGURES = ("beats_baseline", "placement", "depth", "delta_m", "training_curves")
OVERVIEW_FIGURES = ("utk_labels", "dyadic_labels")
FIGURE_FORMATS = ("png", "pdf")
SHARING = {"hps": "HPS", "cross_stitch": "cross-stitch"}
DEPTH_LABELS = {"hps": "shared blocks", "cross_stitch": "cross-stitch units"}
PLACEMENT_STYLES = {"normal": "-", "backwards": "--"}
CONFIGURATION_COLORS = {
    ("hps", "normal"): "tab:blue",
    ("hps", "backwards"): "tab:cyan",
    ("cross_stitch", "normal"): "tab:red",
    ("cross_stitch", "backwards"): "tab:orange",
}
TRAIN_LOSS_COLUMNS = ("train_loss", "train_total_loss", "loss")
VALIDATION_LOSS_COLUMNS = ("val_loss", "validation_loss", "val_total_loss", "valid_loss")


def figure_paths(figure_dir: Path | str, prefix: str, name: str) -> list[Path]:
    """Return the files of one figure: ``{figure_dir}/{prefix}_{name}.png`` and ``.pdf``."""
    return [Path(figure_dir) / f"{prefix}_{name}.{extension}" for extension in FIGURE_FORMATS]


def save_figure(figure: Figure, figure_dir: Path | str, prefix: str, name: str) -> list[Path]:
    """Write ``figure`` as PNG (150 dpi) and PDF and return the paths."""
    paths = figure_paths(figure_dir, prefix, name)
    paths[0].parent.mkdir(parents=True, exist_ok=True)
    for path in paths:
        figure.savefig(path, dpi=150, bbox_inches="tight")
    log.info("wrote %s", ", ".join(map(str, paths)))
    return paths


def note_figure(message: str, title: str = "") -> Figure:
    """Return a figure that shows only ``message``, standing in for a figure without data."""
    figure, axes = plt.subplots(figsize=(6, 2.5))
    _note(axes, message)
    if title:
        axes.set_title(title)
    return figure


def table_tasks(table: pd.DataFrame) -> list[str]:
    """Return the tasks with a main-metric column in ``table``, in the order age, gender, ethnicity, others."""
    names = {
        column.removesuffix("_mae").removesuffix("_acc")
        for column in table.columns
        if (column.endswith("_mae") or column.endswith("_acc"))
        and not column.endswith("_balanced_acc")
        and not column.startswith("participant_")
    }
    return sorted(names, key=lambda name: (TASK_ORDER.index(name) if name in TASK_ORDER else len(TASK_ORDER), name))


def main_metric_column(table: pd.DataFrame, task: str) -> tuple[str, str, bool, float]:
    """Return (column, axis label, lower is better, scale to the plotted unit) of the task's main metric."""
    if f"{task}_mae" in table.columns:
        return f"{task}_mae", f"{task} MAE (years)", True, 1.0
    return f"{task}_acc", f"{task} accuracy (%)", False, 100.0


def baseline_values(table: pd.DataFrame, column: str) -> dict[str, float]:
    """Return the baseline's value of ``column`` per grouping name (the ``tasks`` column)."""
    baselines = table[table["architecture"] == "baseline"]
    return {tasks: value for tasks, value in zip(baselines["tasks"], baselines[column]) if not _missing(value)}


def beats_baseline_figure(table: pd.DataFrame) -> Figure:
    """Bar chart: per task, the share of HPS and cross-stitch configurations better than their grouping's baseline.

    A configuration counts for a task when its grouping contains the task
    and a baseline of that grouping exists. Each bar is labelled with
    better / counted.
    """
    tasks = table_tasks(table)
    figure, axes = plt.subplots(figsize=(max(5.0, 1.8 * len(tasks) + 2), 4))
    width = 0.8 / len(SHARING)
    drawn = False
    for offset, (architecture, label) in enumerate(SHARING.items()):
        for position, task in enumerate(tasks):
            better, counted = _count_better(table, architecture, task)
            x = position + (offset - (len(SHARING) - 1) / 2) * width
            if counted == 0:
                axes.text(x, 1, "no data", ha="center", va="bottom", rotation=90, fontsize=8)
                continue
            share = 100.0 * better / counted
            axes.bar(x, share, width, color=CONFIGURATION_COLORS[(architecture, "normal")], label=label)
            axes.text(x, share + 1, f"{better}/{counted}", ha="center", va="bottom", fontsize=8)
            drawn = True

    if not drawn:
        plt.close(figure)
        return note_figure("no data for HPS or cross-stitch configurations with a baseline", "Configurations beating the baseline")
    axes.set_xticks(range(len(tasks)), tasks)
    axes.set_xlim(-0.6, len(tasks) - 0.4)
    axes.set_ylim(0, 110)
    axes.set_ylabel("configurations better than baseline (%)")
    axes.set_xlabel("task (main metric: MAE for age, accuracy otherwise)")
    axes.set_title("Configurations beating the no-sharing baseline of their grouping")
    axes.legend(
        handles=[Patch(color=CONFIGURATION_COLORS[(architecture, "normal")], label=label) for architecture, label in SHARING.items()],
        loc="upper right", fontsize=8,
    )  # fmt: skip
    figure.tight_layout()
    return figure


def placement_figure(table: pd.DataFrame) -> Figure:
    """Box plots per task of the main metric over configurations: normal versus backwards, for HPS and cross-stitch."""
    tasks = table_tasks(table)
    if not tasks:
        return note_figure("no data: the table has no task metrics", "Normal versus backwards placement")

    figure, axes_row = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 4.2), squeeze=False)
    for axes, task in zip(axes_row[0], tasks):
        column, label, _, scale = main_metric_column(table, task)
        names = []
        for position, (architecture, placement) in enumerate(CONFIGURATION_COLORS):
            rows = table[(table["architecture"] == architecture) & (table["placement"] == placement)]
            values = rows[column].dropna().to_numpy() * scale
            names.append(f"{SHARING[architecture]}\n{placement}")
            if len(values) == 0:
                axes.text(position, 0.5, "no data", ha="center", va="center", transform=axes.get_xaxis_transform(), fontsize=8)
                continue
            boxes = axes.boxplot(values, positions=[position], widths=0.6, patch_artist=True, showfliers=False)
            boxes["boxes"][0].set_facecolor(CONFIGURATION_COLORS[(architecture, placement)])
            boxes["boxes"][0].set_alpha(0.5)
            # Points show every configuration, which matters when a box has only a few.
            jitter = np.linspace(-0.15, 0.15, len(values)) if len(values) > 1 else np.zeros(1)
            axes.scatter(position + jitter, values, s=10, color="black", zorder=3)

        baselines = np.array(list(baseline_values(table, column).values())) * scale
        if len(baselines):
            axes.axhline(baselines.mean(), color="gray", linestyle=":", label="baseline (mean over groupings)")
            axes.legend(fontsize=8, loc="best")
        axes.set_xticks(range(len(names)), names, fontsize=8)
        axes.set_xlim(-0.6, len(names) - 0.4)
        axes.set_ylabel(label)
        axes.set_title(task)
    figure.suptitle("Normal versus backwards placement (one point per configuration, mean over seeds)")
    figure.tight_layout()
    return figure


def depth_figure(table: pd.DataFrame) -> Figure:
    """Line plots of the main metric against the number of shared blocks (HPS) or cross-stitch units.

    One row of panels per task and one column per sharing strategy. Colour
    marks the grouping, line style the placement, error bars the standard
    deviation over seeds, and a dotted line the grouping's baseline.
    """
    tasks = table_tasks(table)
    if not tasks:
        return note_figure("no data: the table has no task metrics", "Metric against depth")

    groupings = list(dict.fromkeys(sort_configurations(table)["tasks"]))
    colors = {grouping: plt.get_cmap("tab10")(i % 10) for i, grouping in enumerate(groupings)}
    figure, axes_grid = plt.subplots(len(tasks), len(SHARING), figsize=(5.5 * len(SHARING), 3.6 * len(tasks)), squeeze=False)
    drawn: set[str] = set()
    for row, task in enumerate(tasks):
        for col, architecture in enumerate(SHARING):
            drawn.update(_draw_depth_panel(axes_grid[row][col], table, task, architecture, colors))

    handles = [Line2D([], [], color=colors[grouping], label=grouping) for grouping in groupings if grouping in drawn]
    handles += [Line2D([], [], color="black", linestyle=style, label=f"{placement} placement") for placement, style in PLACEMENT_STYLES.items()]
    handles.append(Line2D([], [], color="gray", linestyle=":", label="baseline of the grouping"))
    figure.legend(handles=handles, loc="lower center", ncol=min(len(handles), 4), fontsize=8, bbox_to_anchor=(0.5, 0.0))
    figure.suptitle("Main metric against depth (mean ± std over seeds)")
    figure.tight_layout(rect=(0, 0.06, 1, 1))
    return figure


def _draw_depth_panel(axes, table: pd.DataFrame, task: str, architecture: str, colors: dict[str, tuple]) -> list[str]:
    """Draw one task and sharing strategy of ``depth_figure`` and return the groupings drawn."""
    column, label, _, scale = main_metric_column(table, task)
    std_column = f"{column}_std"
    baselines = baseline_values(table, column)
    depths: set[float] = set()
    drawn = []
    for grouping, color in colors.items():
        if task not in grouping.split("+"):
            continue

        for placement, style in PLACEMENT_STYLES.items():
            rows = table[(table["architecture"] == architecture) & (table["placement"] == placement) & (table["tasks"] == grouping)]
            rows = rows.dropna(subset=[column]).sort_values("depth")
            if rows.empty:
                continue
            errors = rows[std_column].fillna(0).to_numpy() * scale if std_column in rows else None
            axes.errorbar(
                rows["depth"].astype(float), rows[column] * scale, yerr=errors,
                color=color, linestyle=style, marker="o", markersize=3, capsize=2,
            )  # fmt: skip
            depths.update(rows["depth"].astype(float))
            if grouping not in drawn:
                drawn.append(grouping)

        if grouping in drawn and grouping in baselines:
            axes.axhline(baselines[grouping] * scale, color=color, linestyle=":", linewidth=1)

    if depths:
        axes.set_xticks(sorted(depths), [str(int(depth)) for depth in sorted(depths)])
        axes.set_xlim(min(depths) - 0.5, max(depths) + 0.5)
    else:
        _note(axes, f"no data for {SHARING[architecture]} on {task}")
    axes.set_xlabel(f"number of {DEPTH_LABELS[architecture]}")
    axes.set_ylabel(label)
    axes.set_title(f"{task}, {SHARING[architecture]}")
    return drawn


def delta_m_figure(table: pd.DataFrame, column: str = "delta_m") -> Figure:
    """Horizontal bars of Delta_m (percent, against the grouping's baseline) for every shared configuration.

    Configurations whose Delta_m is NaN (no baseline) are left out, and the
    title counts them.
    """
    if column not in table.columns:
        return note_figure(f"no data: the table has no {column} column", "Multitask gain")
    shared = sort_configurations(table[table["architecture"] != "baseline"])
    missing = int(shared[column].isna().sum())
    shared = shared.dropna(subset=[column])
    if shared.empty:
        return note_figure("no data for shared configurations with a baseline", "Multitask gain Δm")

    labels = [
        f"{SHARING.get(row.architecture, row.architecture)} {row.placement}, {row.tasks}, depth {_depth_text(row.depth)}"
        for row in shared.itertuples()
    ]
    colors = [CONFIGURATION_COLORS.get((row.architecture, row.placement), "gray") for row in shared.itertuples()]
    figure, axes = plt.subplots(figsize=(8, max(2.5, 1.2 + 0.2 * len(shared))))
    positions = np.arange(len(shared))[::-1]
    axes.barh(positions, shared[column], color=colors)
    axes.axvline(0, color="black", linewidth=0.8)
    low, high = min(0.0, shared[column].min()), max(0.0, shared[column].max())
    padding = 0.08 * ((high - low) or 1.0)
    axes.set_xlim(low - padding, high + padding)
    axes.set_yticks(positions, labels, fontsize=7)
    axes.set_ylim(-0.7, len(shared) - 0.3)
    axes.set_xlabel("Δm against the grouping's no-sharing baseline (%)")
    title = "Multitask gain Δm of every configuration"
    if missing:
        title += f" ({missing} without a baseline left out)"
    axes.set_title(title)
    present = dict.fromkeys(zip(shared["architecture"], shared["placement"]))
    axes.legend(
        handles=[Patch(color=CONFIGURATION_COLORS.get(key, "gray"), label=f"{SHARING.get(key[0], key[0])} {key[1]}") for key in present],
        fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0),
    )  # fmt: skip
    figure.tight_layout()
    return figure


def read_history(path: Path | str) -> pd.DataFrame:
    """Read a training history CSV into columns ``epoch``, ``train_loss`` and ``val_loss`` (NaN when absent).

    Accepted loss column names: TRAIN_LOSS_COLUMNS and VALIDATION_LOSS_COLUMNS.
    Without an ``epoch`` column, rows count epochs from 1.
    """
    history = pd.read_csv(path)
    result = pd.DataFrame(
        {"epoch": history["epoch"] if "epoch" in history.columns else np.arange(1, len(history) + 1)}
    )
    result["train_loss"] = _first_column(history, TRAIN_LOSS_COLUMNS)
    result["val_loss"] = _first_column(history, VALIDATION_LOSS_COLUMNS)
    return result


def training_curves_figure(histories: Sequence[Path | str]) -> Figure:
    """Train (solid) and validation (dashed) total loss per epoch of every history CSV.

    Runs are labelled by the parts of their paths that differ; with more than
    12 runs the per-run legend is dropped. Histories without a loss column
    are skipped and counted in the title.
    """
    if not histories:
        return note_figure("no data: no training histories were given", "Training curves")

    paths = [Path(path) for path in histories]
    labels = _distinct_labels(paths)
    figure, axes = plt.subplots(figsize=(8, 5))
    skipped = 0
    # tab10 keeps up to 10 runs clearly apart; beyond that the per-run colours only hint at identity.
    palette = plt.get_cmap("tab10" if len(paths) <= 10 else "viridis")
    for i, (path, label) in enumerate(zip(paths, labels)):
        history = read_history(path)
        if history[["train_loss", "val_loss"]].isna().all().all():
            log.warning("%s has no train or validation loss column, so it is left out of the training curves", path)
            skipped += 1
            continue
        color = palette(i if len(paths) <= 10 else i / (len(paths) - 1))
        axes.plot(history["epoch"], history["train_loss"], color=color, linewidth=1, label=label)
        axes.plot(history["epoch"], history["val_loss"], color=color, linewidth=1, linestyle="--")

    title = f"Training curves of {len(paths) - skipped} runs"
    if skipped:
        title += f" ({skipped} without loss columns left out)"
    axes.set_title(title)
    axes.set_xlabel("epoch")
    axes.set_ylabel("total loss (sum of task losses)")
    style_handles = [
        Line2D([], [], color="black", label="train"),
        Line2D([], [], color="black", linestyle="--", label="validation"),
    ]
    if len(paths) - skipped <= 12:
        run_handles = [line for line in axes.get_lines() if not line.get_label().startswith("_")]
        axes.legend(handles=style_handles + run_handles, fontsize=7, loc="upper right")
    else:
        axes.legend(handles=style_handles, fontsize=8, loc="upper right")
    figure.tight_layout()
    return figure


def save_results_figures(
    table: pd.DataFrame, histories: Sequence[Path | str], figure_dir: Path | str, prefix: str
) -> dict[str, Figure]:
    """Draw and save the five figures of the results notebook (RESULT_FIGURES) and return them by name."""
    figures = {
        "beats_baseline": beats_baseline_figure(table),
        "placement": placement_figure(table),
        "depth": depth_figure(table),
        "delta_m": delta_m_figure(table),
        "training_curves": training_curves_figure(histories),
    }
    for name, figure in figures.items():
        save_figure(figure, figure_dir, prefix, name)
    return figures


def label_distribution_figure(labels: pd.DataFrame, title: str) -> Figure:
    """Histogram of ages (years) and bar charts of gender and ethnicity counts of one pack's labels."""
    figure, (age_axes, gender_axes, ethnicity_axes) = plt.subplots(1, 3, figsize=(13, 3.8))
    if len(labels) == 0:
        for axes in (age_axes, gender_axes, ethnicity_axes):
            _note(axes, "no data: the pack is empty")
    else:
        age_axes.hist(labels["age"], bins=np.arange(0, labels["age"].max() + 6, 5), color="tab:blue")
        for axes, column, names in ((gender_axes, "gender", GENDERS), (ethnicity_axes, "ethnicity", ETHNICITIES)):
            counts = labels[column].value_counts().reindex(range(len(names)), fill_value=0)
            axes.bar(names, counts.to_numpy(), color="tab:gray")
            for x, count in enumerate(counts):
                axes.text(x, count, str(count), ha="center", va="bottom", fontsize=8)
    age_axes.set_xlabel("age (years, 5-year bins)")
    age_axes.set_ylabel("faces")
    gender_axes.set_xlabel("gender")
    gender_axes.set_ylabel("faces")
    ethnicity_axes.set_xlabel("ethnicity")
    ethnicity_axes.set_ylabel("faces")
    figure.suptitle(f"{title} ({len(labels)} faces)")
    figure.tight_layout()
    return figure


def _count_better(table: pd.DataFrame, architecture: str, task: str) -> tuple[int, int]:
    column, _, lower_is_better, _ = main_metric_column(table, task)
    baselines = baseline_values(table, column)
    rows = table[(table["architecture"] == architecture) & table["tasks"].isin(list(baselines))]
    rows = rows.dropna(subset=[column])
    references = rows["tasks"].map(baselines)
    better = rows[column] < references if lower_is_better else rows[column] > references
    return int(better.sum()), len(rows)


def _note(axes, message: str) -> None:
    axes.text(0.5, 0.5, message, ha="center", va="center", transform=axes.transAxes, fontsize=10, color="dimgray")
    axes.set_xticks([])
    axes.set_yticks([])


def _first_column(table: pd.DataFrame, candidates: Sequence[str]) -> pd.Series:
    for name in candidates:
        if name in table.columns:
            return pd.to_numeric(table[name], errors="coerce").reset_index(drop=True)
    return pd.Series(math.nan, index=range(len(table)))


def _distinct_labels(paths: Sequence[Path]) -> list[str]:
    parts = [path.with_suffix("").parts for path in paths]
    if len(parts) == 1:
        return ["/".join(parts[0][-3:])]

    # Drop the leading and trailing path parts that all runs share, keeping at least one part.
    shortest = min(len(p) for p in parts)
    start = 0
    while start < shortest - 1 and len({p[start] for p in parts}) == 1:
        start += 1
    end = 0
    while end < shortest - start - 1 and len({p[len(p) - 1 - end] for p in parts}) == 1:
        end += 1
    return ["/".join(p[start : len(p) - end]) for p in parts]


def _depth_text(depth) -> str:
    return "–" if _missing(depth) else str(int(depth))


def _missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, (float, np.floating)) and math.isnan(value))
