"""Analysis notebooks executed with papermill, and the figure functions they call."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from facemtl.packed import write_pack
from facemtl.plots import (
    OVERVIEW_FIGURES,
    RESULT_FIGURES,
    figure_paths,
    read_history,
    save_results_figures,
    training_curves_figure,
)
from facemtl.tables import build_results_table, sort_configurations

NOTEBOOKS = Path(__file__).resolve().parents[1] / "workflow" / "notebooks"
GROUPINGS = (("age", "gender"), ("age", "ethnicity"), ("gender", "ethnicity"), ("age", "gender", "ethnicity"))
BASE_VALUES = {"age_mse": 60.0, "age_mae": 5.8, "gender_acc": 0.88, "ethnicity_acc": 0.78}


def synthetic_results_table(seed: int = 0, depths=range(1, 6), architectures=("hps", "cross_stitch")) -> pd.DataFrame:
    """Return a results table shaped like build_results_table's, with random metrics around typical UTKFace values."""
    rng = np.random.default_rng(seed)
    rows = []
    configurations = [("baseline", "none", None)] + [
        (architecture, placement, depth)
        for architecture in architectures
        for placement in ("normal", "backwards")
        for depth in depths
    ]
    for architecture, placement, depth in configurations:
        for grouping in GROUPINGS:
            row = {"architecture": architecture, "placement": placement, "depth": depth, "tasks": "+".join(grouping)}
            for task in grouping:
                for suffix in ("mse", "mae") if task == "age" else ("acc", "balanced_acc"):
                    key = f"{task}_{suffix}"
                    base = BASE_VALUES.get(key, BASE_VALUES.get(f"{task}_acc", 0.8) - 0.04)
                    row[key] = base * (1 + rng.normal(0, 0.03))
                    row[f"{key}_std"] = abs(base * rng.normal(0, 0.01))
            row["n_runs"] = 3
            rows.append(row)

    table = pd.DataFrame(rows)
    baselines = table[table["architecture"] == "baseline"].set_index("tasks")
    gains = []
    for row in table.itertuples():
        terms = []
        for task in row.tasks.split("+"):
            key = "age_mae" if task == "age" else f"{task}_acc"
            reference = baselines.loc[row.tasks, key]
            sign = -1 if task == "age" else 1
            terms.append(sign * (getattr(row, key) - reference) / reference)
        gains.append(100 * float(np.mean(terms)))
    table["delta_m"] = gains
    return sort_configurations(table)


def _write_history(path: Path, epochs: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    train = 3.0 * np.exp(-np.arange(epochs) / 6) + 0.5 + rng.normal(0, 0.02, epochs)
    history = pd.DataFrame({"epoch": np.arange(1, epochs + 1), "train_loss": train, "validation_loss": train + 0.2})
    path.parent.mkdir(parents=True, exist_ok=True)
    history.to_csv(path, index=False)
    return path


def _execute(notebook: Path, output: Path, parameters: dict) -> None:
    papermill = pytest.importorskip("papermill")
    papermill.execute_notebook(str(notebook), str(output), parameters=parameters, kernel_name="python3", progress_bar=False)


def _assert_figures_written(figure_dir: Path, prefix: str) -> None:
    for name in RESULT_FIGURES:
        for path in figure_paths(figure_dir, prefix, name):
            assert path.is_file(), f"{path} was not written"
            assert path.stat().st_size > 0, f"{path} is empty"


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_results_notebook_writes_every_figure(tmp_path):
    table_path = tmp_path / "utk_results.csv"
    synthetic_results_table().to_csv(table_path, index=False)
    histories = [
        _write_history(tmp_path / "models" / "age+gender" / "hps" / "normal" / str(depth) / "seed0" / "history.csv", 20, depth)
        for depth in (1, 2)
    ]
    figure_dir = tmp_path / "figures"

    _execute(
        NOTEBOOKS / "results.ipynb",
        tmp_path / "results.ipynb",
        {
            "results_table": str(table_path),
            "histories": [str(path) for path in histories],
            "dataset": "utk",
            "figure_dir": str(figure_dir),
            "figure_prefix": "utk",
        },
    )

    _assert_figures_written(figure_dir, "utk")


def test_results_notebook_with_sparse_table(tmp_path):
    # One grouping, one seed (NaN std), no cross-stitch rows, no baseline of age+ethnicity, no histories.
    table = synthetic_results_table(depths=[1], architectures=("hps",))
    table = table[table["tasks"].isin(["age+gender", "age+ethnicity"])]
    table = table[~((table["architecture"] == "baseline") & (table["tasks"] == "age+ethnicity"))].copy()
    table.loc[table["tasks"] == "age+ethnicity", "delta_m"] = math.nan
    table[[column for column in table.columns if column.endswith("_std")]] = math.nan
    table["n_runs"] = 1
    table_path = tmp_path / "dyadic_results.csv"
    table.to_csv(table_path, index=False)
    figure_dir = tmp_path / "figures"

    _execute(
        NOTEBOOKS / "results.ipynb",
        tmp_path / "results.ipynb",
        {
            "results_table": str(table_path),
            "histories": [],
            "dataset": "dyadic",
            "figure_dir": str(figure_dir),
            "figure_prefix": "dyadic",
        },
    )

    _assert_figures_written(figure_dir, "dyadic")


def test_figures_of_empty_table(tmp_path):
    empty = build_results_table([])

    save_results_figures(empty, [], tmp_path, "empty")

    _assert_figures_written(tmp_path, "empty")


def test_read_history_accepts_other_column_names(tmp_path):
    path = tmp_path / "history.csv"
    pd.DataFrame({"loss": [2.0, 1.0], "validation_loss": [2.5, 1.5]}).to_csv(path, index=False)

    history = read_history(path)

    assert history["epoch"].tolist() == [1, 2]
    assert history["train_loss"].tolist() == [2.0, 1.0]
    assert history["val_loss"].tolist() == [2.5, 1.5]


def test_training_curves_skip_history_without_losses(tmp_path):
    good = _write_history(tmp_path / "a" / "history.csv", 5, 0)
    bad = tmp_path / "b" / "history.csv"
    bad.parent.mkdir()
    pd.DataFrame({"epoch": [1, 2], "learning_rate": [0.1, 0.1]}).to_csv(bad, index=False)

    figure = training_curves_figure([good, bad])

    assert "1 without loss columns left out" in figure.axes[0].get_title()


def test_dataset_overview_notebook(tmp_path):
    labels = pd.DataFrame(
        {
            "age": [1, 25, 25, 40, 80, 33],
            "gender": [0, 1, 1, 0, 1, 0],
            "ethnicity": [0, 1, 2, 3, 4, 0],
            "split": ["train", "train", "validation", "test", "test", "train"],
        }
    )
    images = np.zeros((len(labels), 8, 8, 3), dtype=np.uint8)
    write_pack(tmp_path / "utk" / "images.npy", tmp_path / "utk" / "labels.csv", images, labels)
    write_pack(tmp_path / "dyadic" / "images.npy", tmp_path / "dyadic" / "labels.csv", images[:0], labels.iloc[:0])
    figure_dir = tmp_path / "figures"

    _execute(
        NOTEBOOKS / "dataset_overview.ipynb",
        tmp_path / "dataset_overview.ipynb",
        {
            "utk_labels": str(tmp_path / "utk" / "labels.csv"),
            "dyadic_labels": str(tmp_path / "dyadic" / "labels.csv"),
            "figure_dir": str(figure_dir),
        },
    )

    for name in OVERVIEW_FIGURES:
        for path in figure_paths(figure_dir, "overview", name):
            assert path.is_file(), f"{path} was not written"
            assert path.stat().st_size > 0, f"{path} is empty"
