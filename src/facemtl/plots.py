"""Figures of the analysis notebooks, drawn from results tables (facemtl.tables) and training histories.

Every figure function returns a matplotlib Figure. Where data is missing
(an empty table, an absent architecture or grouping, no histories), the panel
shows a "no data ..." note instead of raising, so the workflow's declared
figure files exist for any results table. The main metric of a task is MAE in
years for regression tasks and accuracy in percent otherwise.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402 (the backend must be chosen first)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from facemtl.metrics import GROUP_COLUMNS  # noqa: E402
from facemtl.packed import ETHNICITIES, GENDERS  # noqa: E402
from facemtl.tables import TASK_ORDER, sort_configurations  # noqa: E402

log = logging.getLogger(__name__)

RESULT_FIGURES = (
    "beats_baseline",
    "placement",
    "depth",
    "delta_m",
    "training_curves",
    "cross_stitch_weights",
    "group_metrics",
)
PARTICIPANT_FIGURES = ("participant_metrics", "participant_delta_m")
"""Figures that only the dyadic results notebook draws, from the participant-level columns."""
OVERVIEW_FIGURES = ("utk_labels", "dyadic_labels")
FIGURE_FORMATS = ("png", "pdf")
SHARING = {"hps": "HPS", "cross_stitch": "cross-stitch"}
DEPTH_LABELS = {"hps": "shared blocks", "cross_stitch": "cross-stitch units"}
PLACEMENT_STYLES = {"normal": "-", "backwards": "--"}
PLACEMENT_MARKERS = {"normal": "o", "backwards": "s"}
# Normal and backwards points of one depth sit this far left and right of it, so neither hides the other.
PLACEMENT_OFFSETS = {"normal": -0.08, "backwards": 0.08}
CONFIGURATION_COLORS = {
    ("hps", "normal"): "tab:blue",
    ("hps", "backwards"): "tab:cyan",
    ("cross_stitch", "normal"): "tab:red",
    ("cross_stitch", "backwards"): "tab:orange",
}
TRAIN_LOSS_COLUMNS = ("train_loss", "train_total_loss", "loss")
VALIDATION_LOSS_COLUMNS = ("val_loss", "validation_loss", "val_total_loss", "valid_loss")
RUN_PATH = re.compile(
    r"(?:^|/)(?P<tasks>[^/]+)/(?P<architecture>baseline|hps|cross_stitch)/(?P<placement>[^/]+)/"
    r"(?P<depth>\d+)/seed(?P<seed>\d+)/[^/]+$"
)
"""A run's file below results/models or results/eval/<dataset>: <grouping>/<architecture>/<placement>/<depth>/seed<seed>/<file>."""


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
    marks the grouping, and placement has its own line style and marker.
    Normal is a solid line with filled circles. Backwards is a dashed line
    with open squares, drawn slightly right of the depth. Error bars are the
    standard deviation over seeds, and a dotted line is the grouping's baseline.
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
    handles += [
        Line2D(
            [], [], color="black", linestyle=style, marker=PLACEMENT_MARKERS[placement],
            markerfacecolor="black" if placement == "normal" else "white", label=f"{placement} placement",
        )
        for placement, style in PLACEMENT_STYLES.items()
    ]  # fmt: skip
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
                rows["depth"].astype(float) + PLACEMENT_OFFSETS[placement], rows[column] * scale, yerr=errors,
                color=color, linestyle=style, marker=PLACEMENT_MARKERS[placement],
                markerfacecolor=color if placement == "normal" else "white", markersize=5, capsize=2,
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
    if column.startswith("participant_"):
        title += ", participant level"
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


def parse_run_path(path: Path | str) -> dict[str, Any] | None:
    """Return the configuration (tasks, architecture, placement, depth, seed) in a run file's path (RUN_PATH), or None."""
    match = RUN_PATH.search(Path(path).as_posix())
    if match is None:
        return None
    run: dict[str, Any] = match.groupdict()
    run["depth"] = int(run["depth"])
    run["seed"] = int(run["seed"])
    return run


def best_configurations(table: pd.DataFrame, architectures: Sequence[str] = tuple(SHARING), column: str = "delta_m") -> pd.DataFrame:
    """Return, per grouping, the row of ``architectures`` with the highest ``column`` (Δm by default).

    A tie keeps the first row in sort_configurations order (HPS before
    cross-stitch, normal before backwards, lower depth first). Groupings
    without a value in ``column`` are left out. Rows come in grouping order.
    """
    if column not in table.columns or table.empty:
        return table.iloc[0:0]
    candidates = sort_configurations(table[table["architecture"].isin(list(architectures))])
    candidates = candidates.dropna(subset=[column]).reset_index(drop=True)
    if candidates.empty:
        return candidates
    best = candidates.loc[candidates.groupby("tasks", sort=False)[column].idxmax()]
    order = list(dict.fromkeys(sort_configurations(table)["tasks"]))
    return best.sort_values("tasks", key=lambda tasks: tasks.map(order.index)).reset_index(drop=True)


def configuration_label(row: Any) -> str:
    """Return a short label of a results-table row, such as ``cross-stitch backwards, depth 2``."""
    if row.architecture == "baseline":
        return "baseline"
    return f"{SHARING.get(row.architecture, row.architecture)} {row.placement}, depth {_depth_text(row.depth)}"


def select_curve_histories(table: pd.DataFrame | None, histories: Sequence[Path | str]) -> dict[str, list[tuple[str, Path]]]:
    """Pick the training histories to draw, per grouping: the baseline's runs and the best configuration's runs.

    The best configuration of a grouping is the HPS or cross-stitch
    configuration with the highest Δm (best_configurations). Returns grouping
    -> [(label, path)], where the label is ``baseline`` or the configuration's
    label with its Δm. With ``table`` None, every history is kept and
    labelled by its configuration. Paths that RUN_PATH does not match are
    left out with a warning.
    """
    best = {} if table is None else {row.tasks: row for row in best_configurations(table).itertuples()}
    selected: dict[str, list[tuple[str, Path]]] = {}
    for path in map(Path, histories):
        run = parse_run_path(path)
        if run is None:
            log.warning("%s does not follow <grouping>/<architecture>/<placement>/<depth>/seed<seed>/, so it is left out of the training curves", path)
            continue

        if table is None:
            label = configuration_label(SimpleNamespace(**run))
        elif run["architecture"] == "baseline":
            label = "baseline"
        elif run["tasks"] in best and _is_configuration(run, best[run["tasks"]]):
            row = best[run["tasks"]]
            label = f"best: {configuration_label(row)} (Δm {row.delta_m:+.2f}%)"
        else:
            continue
        selected.setdefault(run["tasks"], []).append((label, path))

    return {
        grouping: sorted(selected[grouping], key=lambda item: (item[0] != "baseline", item[0], str(item[1])))
        for grouping in sorted(selected, key=_grouping_key)
    }


def training_curves_figure(histories: Sequence[Path | str], table: pd.DataFrame | None = None) -> Figure:
    """Train (solid) and validation (dashed) total loss per epoch, one panel per grouping.

    With a results ``table``, each panel shows only the baseline's runs (gray)
    and the runs of the grouping's best configuration by Δm (red), as chosen by
    select_curve_histories. Every seed gets its own pair of lines. Without a
    table, every history is drawn. Histories without a loss column are skipped and counted
    in the figure's title. Epoch ticks are integers.
    """
    selected = select_curve_histories(table, histories)
    if not selected:
        return note_figure("no data: no training histories of a baseline or best configuration", "Training curves")

    columns = min(2, len(selected))
    rows = math.ceil(len(selected) / columns)
    figure, axes_grid = plt.subplots(rows, columns, figsize=(6.5 * columns, 4.2 * rows), squeeze=False)
    skipped = 0
    for axes, (grouping, runs) in zip(axes_grid.flat, selected.items()):
        others = [label for label in dict.fromkeys(label for label, _ in runs) if label != "baseline"]
        # tab10's colour 3 is red, so the best configuration is red and further configurations follow tab10.
        colors = {"baseline": "tab:gray", **{label: plt.get_cmap("tab10")((3 + i) % 10) for i, label in enumerate(others)}}
        drawn: dict[str, int] = {}
        for label, path in runs:
            history = read_history(path)
            if history[["train_loss", "val_loss"]].isna().all().all():
                log.warning("%s has no train or validation loss column, so it is left out of the training curves", path)
                skipped += 1
                continue
            axes.plot(history["epoch"], history["train_loss"], color=colors[label], linewidth=1.2, marker=".")
            axes.plot(history["epoch"], history["val_loss"], color=colors[label], linewidth=1.2, linestyle="--", marker=".")
            drawn[label] = drawn.get(label, 0) + 1

        handles = [Line2D([], [], color=colors[label], label=f"{label} ({count} run{'s' if count > 1 else ''})") for label, count in drawn.items()]
        handles += [Line2D([], [], color="black", label="train"), Line2D([], [], color="black", linestyle="--", label="validation")]
        axes.legend(handles=handles, fontsize=7, loc="upper right")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_xlabel("epoch")
        axes.set_ylabel("total loss (sum of task losses)")
        axes.set_title(grouping)
    for axes in list(axes_grid.flat)[len(selected) :]:
        axes.set_visible(False)

    title = "Training curves of the baseline and of the best configuration by Δm" if table is not None else "Training curves"
    if skipped:
        title += f" ({skipped} without loss columns left out)"
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def read_cross_stitch_weights(checkpoint: Path | str) -> tuple[list[str], dict[int, np.ndarray]]:
    """Read the learned T x T cross-stitch matrices of a checkpoint.

    Returns the task names in matrix order (row i mixes into task i) and a
    dict of the 0-based index of the block that each unit follows to its
    matrix. Raises ValueError for a checkpoint that is not a cross-stitch run.
    """
    import torch

    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    settings = saved.get("settings", {}) if isinstance(saved, dict) else {}
    if settings.get("architecture") != "cross_stitch":
        raise ValueError(f"{checkpoint} is not a cross-stitch checkpoint (architecture {settings.get('architecture')!r})")
    matrices = {}
    for key, value in saved["state_dict"].items():
        match = re.fullmatch(r"units\.(\d+)\.weight", key)
        if match:
            matrices[int(match[1])] = value.detach().cpu().numpy().astype(np.float64)
    return list(settings["tasks"]), dict(sorted(matrices.items()))


def cross_stitch_weights_figure(table: pd.DataFrame, checkpoints: Sequence[Path | str]) -> Figure:
    """Heat maps of the learned cross-stitch matrices of each grouping's best cross-stitch configuration.

    The best configuration is the cross-stitch one with the highest Δm. One
    row per grouping and one heat map per unit; a matrix is the mean over the
    seeds whose checkpoints are given. Row i, column j is the weight of task
    j's activation in task i's mixed activation, so a diagonal near 1 means
    little sharing.
    """
    best = best_configurations(table, ("cross_stitch",))
    panels = []
    for row in best.itertuples():
        paths = [path for path in map(Path, checkpoints) if (run := parse_run_path(path)) is not None and _is_configuration(run, row)]
        if not paths:
            continue
        weights = [read_cross_stitch_weights(path) for path in paths]
        tasks = weights[0][0]
        units = {index: np.mean([matrices[index] for _, matrices in weights], axis=0) for index in weights[0][1]}
        panels.append((row, tasks, units, len(paths)))
    if not panels:
        return note_figure("no data: no cross-stitch checkpoint of a configuration with Δm", "Cross-stitch weights")

    columns = max(len(units) for _, _, units, _ in panels)
    figure, axes_grid = plt.subplots(len(panels), columns, figsize=(2.9 * columns + 1.2, 2.9 * len(panels) + 0.6), squeeze=False)
    values = np.concatenate([matrix.ravel() for _, _, units, _ in panels for matrix in units.values()])
    low, high = min(0.0, float(values.min())), max(1.0, float(values.max()))
    image = None
    for axes_row, (row, tasks, units, seeds) in zip(axes_grid, panels):
        for axes, (index, matrix) in zip(axes_row, units.items()):
            image = axes.imshow(matrix, cmap="viridis", vmin=low, vmax=high)
            for (i, j), value in np.ndenumerate(matrix):
                axes.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8, color="white" if value < (low + high) / 2 else "black")
            axes.set_xticks(range(len(tasks)), tasks, fontsize=7, rotation=30)
            axes.set_yticks(range(len(tasks)), tasks, fontsize=7)
            axes.set_title(f"unit after block {index + 1}", fontsize=9)
        axes_row[0].set_ylabel(f"{row.tasks}\n{row.placement}, {seeds} seed{'s' if seeds > 1 else ''}, Δm {row.delta_m:+.2f}%", fontsize=8)
        for axes in axes_row[len(units) :]:
            axes.set_visible(False)
    figure.suptitle("Learned cross-stitch weights of the best cross-stitch configuration per grouping (row: receiving task)")
    figure.tight_layout(rect=(0, 0, 0.92, 1))
    figure.colorbar(image, cax=figure.add_axes((0.93, 0.15, 0.015, 0.7)), label="weight")
    return figure


def read_group_metrics(metrics_paths: Sequence[Path | str]) -> pd.DataFrame:
    """Read the per-group metrics of evaluation metrics JSONs (their ``groups`` entry) into a long table.

    Columns: tasks, architecture, placement, depth, seed, metric (such as
    ``age_mae``), column (``gender`` or ``ethnicity``), group (such as
    ``female``), value and n (the group's number of images). Raises
    ValueError naming a file without a ``groups`` entry.
    """
    records = []
    for path in map(Path, metrics_paths):
        with open(path) as handle:
            run = json.load(handle)
        if "groups" not in run:
            raise ValueError(f"{path} has no 'groups' entry; rerun its evaluation with the current facemtl.evaluate")
        configuration = {
            "tasks": "+".join(run["tasks"]),
            "architecture": run["architecture"],
            "placement": run.get("placement") or "none",
            "depth": int(run.get("depth") or 0),
            "seed": run.get("seed"),
        }
        counts = {key.removeprefix("n@"): value for key, value in run["groups"].items() if key.startswith("n@")}
        for key, value in run["groups"].items():
            if key.startswith("n@"):
                continue
            metric, group_key = key.split("@", 1)
            column, group = group_key.split("=", 1)
            records.append(
                {**configuration, "metric": metric, "column": column, "group": group, "value": math.nan if value is None else float(value), "n": counts.get(group_key, 0)}
            )
    columns = ["tasks", "architecture", "placement", "depth", "seed", "metric", "column", "group", "value", "n"]
    return pd.DataFrame.from_records(records, columns=columns)


def group_comparison(table: pd.DataFrame, groups: pd.DataFrame) -> pd.DataFrame:
    """Compare the baseline and the best configuration by Δm of each grouping within every gender and ethnicity group.

    ``groups`` is read_group_metrics's table. Returns one row per grouping,
    configuration (role ``baseline`` or ``best``), task and group with the
    task's main metric (MAE in years, or accuracy in percent) as the mean over
    seeds, its number of seeds, and the group's number of images.
    """
    columns = ["tasks", "role", "configuration", "task", "metric", "column", "group", "value", "seeds", "n"]
    if groups.empty:
        return pd.DataFrame(columns=columns)

    chosen = [(row, "baseline") for row in table[table["architecture"] == "baseline"].itertuples()]
    chosen += [(row, "best") for row in best_configurations(table).itertuples()]
    records = []
    for row, role in chosen:
        runs = groups[[_is_configuration(run, row) for run in groups[["tasks", "architecture", "placement", "depth"]].to_dict("records")]]
        for task in row.tasks.split("+"):
            metric = f"{task}_mae" if f"{task}_mae" in set(groups["metric"]) else f"{task}_acc"
            scale = 1.0 if metric.endswith("_mae") else 100.0
            selected = runs[runs["metric"] == metric]
            for (column, group), values in selected.groupby(["column", "group"], sort=False):
                records.append(
                    {
                        "tasks": row.tasks, "role": role, "configuration": configuration_label(row), "task": task,
                        "metric": metric, "column": column, "group": group, "value": values["value"].mean() * scale,
                        "seeds": int(values["value"].notna().sum()), "n": int(values["n"].iloc[0]),
                    }
                )  # fmt: skip
    return pd.DataFrame.from_records(records, columns=columns)


def group_metrics_figure(comparison: pd.DataFrame) -> Figure:
    """Bar charts of each task's main metric within every gender and ethnicity group.

    ``comparison`` is group_comparison's table. The figure has one row of
    panels per task and one column per group column (gender, ethnicity). Within
    each group, every grouping with the task gets a hatched bar for its baseline
    and a solid bar for its best configuration by Δm. Tick labels give the group's number of test images.
    """
    if comparison.empty:
        return note_figure("no data: no per-group metrics of a baseline or best configuration", "Metrics per group")

    tasks = [task for task in TASK_ORDER if task in set(comparison["task"])]
    tasks += sorted(set(comparison["task"]) - set(tasks))
    group_columns = [column for column in GROUP_COLUMNS if column in set(comparison["column"])]
    groupings = sorted(set(comparison["tasks"]), key=_grouping_key)
    colors = {grouping: plt.get_cmap("tab10")(i % 10) for i, grouping in enumerate(groupings)}
    figure, axes_grid = plt.subplots(len(tasks), len(group_columns), figsize=(5.5 * len(group_columns), 3.4 * len(tasks)), squeeze=False)
    for axes_row, task in zip(axes_grid, tasks):
        for axes, column in zip(axes_row, group_columns):
            _draw_group_panel(axes, comparison[(comparison["task"] == task) & (comparison["column"] == column)], column, colors)
            axes.set_title(f"{task} by {column} group", fontsize=10)

    handles = [Patch(color=color, label=grouping) for grouping, color in colors.items()]
    handles += [Patch(facecolor="white", edgecolor="black", hatch="///", label="baseline"), Patch(facecolor="black", label="best configuration by Δm")]
    figure.legend(handles=handles, loc="lower center", ncol=min(len(handles), 4), fontsize=8)
    figure.suptitle("Main metric per gender and ethnicity group: baseline against the best configuration of each grouping")
    figure.tight_layout(rect=(0, 0.06 if len(tasks) > 1 else 0.12, 1, 1))
    return figure


def _draw_group_panel(axes, rows: pd.DataFrame, column: str, colors: dict[str, tuple]) -> None:
    names = list(GROUP_COLUMNS[column])
    names += sorted(set(rows["group"]) - set(names))
    series = [(grouping, role) for grouping in colors for role in ("baseline", "best") if ((rows["tasks"] == grouping) & (rows["role"] == role)).any()]
    if not series:
        _note(axes, "no data")
        return
    width = 0.8 / len(series)
    for offset, (grouping, role) in enumerate(series):
        values = rows[(rows["tasks"] == grouping) & (rows["role"] == role)].set_index("group")["value"].reindex(names)
        positions = np.arange(len(names)) + (offset - (len(series) - 1) / 2) * width
        if role == "baseline":
            axes.bar(positions, values.to_numpy(), width, facecolor="white", edgecolor=colors[grouping], hatch="///")
        else:
            axes.bar(positions, values.to_numpy(), width, color=colors[grouping])
    counts = rows.drop_duplicates("group").set_index("group")["n"].reindex(names).fillna(0).astype(int)
    axes.set_xticks(range(len(names)), [f"{name}\n(n={count})" for name, count in counts.items()], fontsize=8)
    metric = rows["metric"].iloc[0]
    axes.set_ylabel("MAE (years)" if metric.endswith("_mae") else "accuracy (%)")


def participant_metrics_figure(table: pd.DataFrame) -> Figure:
    """Scatter of each task's main metric per frame (x) against per participant (y), one point per configuration.

    The participant columns (``participant_<metric>``) come from dyadic
    results tables, where a participant's frames are merged into one
    prediction. Points on the dotted diagonal agree at both levels.
    """
    tasks = [task for task in table_tasks(table) if f"participant_{main_metric_column(table, task)[0]}" in table.columns]
    if not tasks:
        return note_figure("no data: the table has no participant-level metrics", "Frame against participant level")

    figure, axes_row = plt.subplots(1, len(tasks), figsize=(4.4 * len(tasks), 4.4), squeeze=False)
    styles = {("baseline", "none"): "black", **CONFIGURATION_COLORS}
    for axes, task in zip(axes_row[0], tasks):
        column, label, _, scale = main_metric_column(table, task)
        rows = table.dropna(subset=[column, f"participant_{column}"])
        for (architecture, placement), color in styles.items():
            chosen = rows[(rows["architecture"] == architecture) & (rows["placement"] == placement)]
            if len(chosen):
                name = "baseline" if architecture == "baseline" else f"{SHARING[architecture]} {placement}"
                axes.scatter(chosen[column] * scale, chosen[f"participant_{column}"] * scale, color=color, s=18, label=name)
        if rows.empty:
            _note(axes, f"no data for {task}")
            continue
        values = np.concatenate([rows[column], rows[f"participant_{column}"]]) * scale
        low, high = values.min(), values.max()
        padding = 0.05 * ((high - low) or 1.0)
        axes.plot([low - padding, high + padding], [low - padding, high + padding], color="gray", linestyle=":", linewidth=1)
        axes.set_xlabel(f"per frame: {label}")
        axes.set_ylabel(f"per participant: {label}")
        axes.set_title(task)
        axes.legend(fontsize=7, loc="best")
    figure.suptitle("Frame-level against participant-level main metric (one point per configuration, mean over seeds)")
    figure.tight_layout()
    return figure


def save_results_figures(
    table: pd.DataFrame,
    histories: Sequence[Path | str],
    figure_dir: Path | str,
    prefix: str,
    cross_stitch_checkpoints: Sequence[Path | str] = (),
    metrics: Sequence[Path | str] = (),
    participant: bool = False,
) -> dict[str, Figure]:
    """Draw and save the results notebook's figures (RESULT_FIGURES, plus PARTICIPANT_FIGURES with ``participant``) and return them by name.

    ``metrics`` are the evaluation metrics JSONs that the per-group figure reads.
    """
    figures = {
        "beats_baseline": beats_baseline_figure(table),
        "placement": placement_figure(table),
        "depth": depth_figure(table),
        "delta_m": delta_m_figure(table),
        "training_curves": training_curves_figure(histories, table),
        "cross_stitch_weights": cross_stitch_weights_figure(table, cross_stitch_checkpoints),
        "group_metrics": group_metrics_figure(group_comparison(table, read_group_metrics(metrics))),
    }
    if participant:
        figures["participant_metrics"] = participant_metrics_figure(table)
        figures["participant_delta_m"] = delta_m_figure(table, "participant_delta_m")
    for name, figure in figures.items():
        save_figure(figure, figure_dir, prefix, name)
    return figures


def cam_figure(images: np.ndarray, maps: dict[tuple[str, str], np.ndarray], title: str, captions: Sequence[str] = ()) -> Figure:
    """Grid of Grad-CAM overlays: one row per face, the face itself, then one column per (model, task) of ``maps``.

    ``images`` are uint8 (N, H, W, 3) and every map (N, H, W) in [0, 1]
    (facemtl.cam.grad_cam). ``captions`` label the faces' rows, such as their
    true labels.
    """
    from facemtl.cam import overlay

    if len(images) == 0 or not maps:
        return note_figure("no data: no faces or no models to explain", title)

    keys = list(maps)
    figure, axes_grid = plt.subplots(len(images), 1 + len(keys), figsize=(1.45 * (1 + len(keys)), 1.55 * len(images) + 0.9), squeeze=False)
    for row, image in enumerate(images):
        axes_grid[row][0].imshow(image)
        axes_grid[row][0].set_ylabel(captions[row] if row < len(captions) else "", fontsize=6)
        for column, key in enumerate(keys, start=1):
            axes_grid[row][column].imshow(overlay(image, maps[key][row]))
    for column, (model, task) in enumerate(keys, start=1):
        axes_grid[0][column].set_title(f"{model.replace(': ', ':' + chr(10))}\n{task}", fontsize=6)
    axes_grid[0][0].set_title("face", fontsize=6)
    for axes in axes_grid.flat:
        axes.set_xticks([])
        axes.set_yticks([])
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    return figure


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


def _is_configuration(run: dict[str, Any], row: Any) -> bool:
    """Return whether a run (parse_run_path's dict) belongs to the configuration of a results-table row."""
    if run["tasks"] != row.tasks or run["architecture"] != row.architecture:
        return False
    # The baseline has one configuration per grouping, whatever its table stores as placement and depth.
    if row.architecture == "baseline":
        return True
    return run["placement"] == row.placement and not _missing(row.depth) and int(run["depth"]) == int(row.depth)


def _grouping_key(grouping: str) -> tuple:
    # Pairs before the triplet, then age, gender, ethnicity order, as the results tables sort them.
    tasks = grouping.split("+")
    return (len(tasks), [TASK_ORDER.index(task) if task in TASK_ORDER else len(TASK_ORDER) for task in tasks], grouping)


def _depth_text(depth) -> str:
    return "–" if _missing(depth) else str(int(depth))


def _missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, (float, np.floating)) and math.isnan(value))
