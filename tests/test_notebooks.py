"""Analysis notebooks executed with papermill, and the figure functions they call."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch

from facemtl.models import model_from_settings
from facemtl.packed import write_pack
from facemtl.plots import (
    OVERVIEW_FIGURES,
    PARTICIPANT_FIGURES,
    RESULT_FIGURES,
    best_configurations,
    figure_paths,
    group_comparison,
    read_cross_stitch_weights,
    read_group_metrics,
    read_history,
    save_results_figures,
    select_curve_histories,
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


def _assert_figures_written(figure_dir: Path, prefix: str, names=RESULT_FIGURES) -> None:
    for name in names:
        for path in figure_paths(figure_dir, prefix, name):
            assert path.is_file(), f"{path} was not written"
            assert path.stat().st_size > 0, f"{path} is empty"


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


TASK_SETTINGS = {
    "age": {"kind": "regression", "loss": "mse"},
    "gender": {"kind": "binary", "loss": "bce"},
    "ethnicity": {"kind": "multiclass", "classes": 5, "loss": "cross_entropy"},
}


def _save_checkpoint(models: Path, grouping: str, architecture: str, placement: str, depth: int, seed: int = 1) -> Path:
    """Write an untrained tiny model as a training checkpoint at its run path below ``models``."""
    settings = {
        "grouping": grouping,
        "architecture": architecture,
        "placement": placement,
        "depth": depth,
        "seed": seed,
        "tasks": {name: TASK_SETTINGS[name] for name in grouping.split("+")},
        "model": {"channels": [4, 4, 8, 8, 8], "hidden": [8]},
        "image_size": 94,
    }
    path = models / grouping / architecture / placement / str(depth) / f"seed{seed}" / "model.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model_from_settings(settings, seed=seed).state_dict(), "settings": settings}, path)
    return path


def _write_metrics(evaluation: Path, row, seed: int = 1, participants: bool = False) -> Path:
    """Write a metrics JSON with per-group metrics for one results-table row, as facemtl.evaluate does."""
    tasks = row.tasks.split("+")
    depth = 0 if row.architecture == "baseline" else int(row.depth)
    groups = {}
    for column, names in (("gender", ("male", "female")), ("ethnicity", ("White", "Black", "Asian", "Indian", "Others"))):
        for k, name in enumerate(names):
            for task in tasks:
                key = "age_mae" if task == "age" else f"{task}_acc"
                groups[f"{key}@{column}={name}"] = float(getattr(row, key)) * (1 + 0.02 * k)
            groups[f"n@{column}={name}"] = 10 + k
    run = {
        "dataset": "dyadic" if participants else "utk",
        "grouping": row.tasks,
        "architecture": row.architecture,
        "placement": row.placement,
        "depth": depth,
        "seed": seed,
        "tasks": tasks,
        "n": 100,
        "metrics": {},
        "groups": groups,
    }
    path = evaluation / row.tasks / row.architecture / row.placement / str(depth) / f"seed{seed}" / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(run))
    return path


def with_participant_columns(table: pd.DataFrame) -> pd.DataFrame:
    """Add participant-level columns as a dyadic results table has them."""
    table = table.copy()
    for column in [name for name in table.columns if name.endswith(("_mae", "_acc", "delta_m"))]:
        table[f"participant_{column}"] = table[column] * 1.05
    return table


def test_results_notebook_writes_every_figure(tmp_path):
    table = synthetic_results_table()
    table_path = tmp_path / "utk_results.csv"
    table.to_csv(table_path, index=False)
    models = tmp_path / "models"
    histories = [
        _write_history(models / "age+gender" / architecture / placement / str(depth) / f"seed{seed}" / "history.csv", 20, depth + seed)
        for architecture, placement, depth in (("baseline", "none", 0), ("hps", "normal", 1), ("hps", "normal", 2))
        for seed in (1, 2)
    ]
    checkpoints = [_save_checkpoint(models, "age+gender", "cross_stitch", placement, 2) for placement in ("normal", "backwards")]
    metrics = [_write_metrics(tmp_path / "eval", row) for row in table.itertuples()]
    figure_dir = tmp_path / "figures"

    _execute(
        NOTEBOOKS / "results.ipynb",
        tmp_path / "results.ipynb",
        {
            "results_table": str(table_path),
            "histories": [str(path) for path in histories],
            "cross_stitch_checkpoints": [str(path) for path in checkpoints],
            "metrics": [str(path) for path in metrics],
            "dataset": "utk",
            "figure_dir": str(figure_dir),
            "figure_prefix": "utk",
        },
    )

    _assert_figures_written(figure_dir, "utk")
    assert not figure_paths(figure_dir, "utk", "participant_metrics")[0].exists()


def test_results_notebook_dyadic_participant_figures(tmp_path):
    table_path = tmp_path / "dyadic_results.csv"
    with_participant_columns(synthetic_results_table(depths=[1, 2])).to_csv(table_path, index=False)
    figure_dir = tmp_path / "figures"

    _execute(
        NOTEBOOKS / "results.ipynb",
        tmp_path / "results.ipynb",
        {"results_table": str(table_path), "dataset": "dyadic", "figure_dir": str(figure_dir), "figure_prefix": "dyadic"},
    )

    _assert_figures_written(figure_dir, "dyadic", RESULT_FIGURES + PARTICIPANT_FIGURES)


def test_best_configuration_highest_delta_m():
    table = synthetic_results_table()
    shared = table[table["architecture"] != "baseline"]

    best = best_configurations(table)

    assert list(best["tasks"]) == ["age+gender", "age+ethnicity", "gender+ethnicity", "age+gender+ethnicity"]
    for row in best.itertuples():
        assert row.delta_m == shared.loc[shared["tasks"] == row.tasks, "delta_m"].max()


def test_training_curves_only_baseline_and_best(tmp_path):
    table = synthetic_results_table(depths=[1, 2])
    best = best_configurations(table).set_index("tasks").loc["age+gender"]
    models = tmp_path / "models"
    configurations = [("baseline", "none", 0)] + [
        (architecture, placement, depth) for architecture in ("hps", "cross_stitch") for placement in ("normal", "backwards") for depth in (1, 2)
    ]
    histories = [
        _write_history(models / "age+gender" / architecture / placement / str(depth) / "seed1" / "history.csv", 3, depth)
        for architecture, placement, depth in configurations
    ]

    selected = select_curve_histories(table, histories)
    figure = training_curves_figure(histories, table)

    paths = [str(path) for _, path in selected["age+gender"]]
    assert len(paths) == 2
    assert "/baseline/none/0/" in paths[0]
    assert f"/{best.architecture}/{best.placement}/{int(best.depth)}/" in paths[1]
    ticks = figure.axes[0].get_xticks()
    assert all(float(tick).is_integer() for tick in ticks)


def test_cross_stitch_weights_read_from_checkpoint(tmp_path):
    path = _save_checkpoint(tmp_path / "models", "age+gender+ethnicity", "cross_stitch", "normal", 2)

    tasks, matrices = read_cross_stitch_weights(path)

    assert tasks == ["age", "gender", "ethnicity"]
    assert sorted(matrices) == [3, 4]
    np.testing.assert_allclose(np.diag(matrices[3]), 0.9)
    np.testing.assert_allclose(matrices[3].sum(axis=1), 1.0, rtol=1e-6)


def test_cross_stitch_weights_reject_baseline(tmp_path):
    path = _save_checkpoint(tmp_path / "models", "age+gender", "baseline", "none", 0)

    with pytest.raises(ValueError, match="is not a cross-stitch checkpoint"):
        read_cross_stitch_weights(path)


def test_group_comparison_baseline_and_best(tmp_path):
    table = synthetic_results_table(depths=[1])
    metrics = [_write_metrics(tmp_path, row, seed) for row in table.itertuples() for seed in (1, 2)]

    comparison = group_comparison(table, read_group_metrics(metrics))

    age_gender = comparison[comparison["tasks"] == "age+gender"]
    assert set(age_gender["role"]) == {"baseline", "best"}
    assert set(age_gender["task"]) == {"age", "gender"}
    black = age_gender[(age_gender["role"] == "baseline") & (age_gender["task"] == "age") & (age_gender["group"] == "Black")]
    baseline_mae = table[(table["architecture"] == "baseline") & (table["tasks"] == "age+gender")]["age_mae"].iloc[0]
    assert black["value"].iloc[0] == pytest.approx(baseline_mae * 1.02)
    assert black["seeds"].iloc[0] == 2
    assert black["n"].iloc[0] == 11


def test_group_metrics_missing_groups_named(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"tasks": ["age", "gender"], "architecture": "baseline"}))

    with pytest.raises(ValueError, match=f"{path} has no 'groups' entry"):
        read_group_metrics([path])


def test_cam_notebook_writes_both_figures(tmp_path):
    table = synthetic_results_table(depths=[1])
    table_path = tmp_path / "utk_results.csv"
    table.to_csv(table_path, index=False)
    grouping = "age+gender+ethnicity"
    checkpoints = [
        _save_checkpoint(tmp_path / "models", grouping, architecture, placement, depth)
        for architecture, placement, depth in [("baseline", "none", 0)]
        + [(architecture, placement, 1) for architecture in ("hps", "cross_stitch") for placement in ("normal", "backwards")]
    ]
    rng = np.random.default_rng(0)
    labels = pd.DataFrame({"age": rng.integers(1, 90, 20), "gender": rng.integers(0, 2, 20), "ethnicity": rng.integers(0, 5, 20)})
    utk = labels.assign(split=["train", "test"] * 10)
    dyadic = labels.assign(participant_id=[f"P{i % 4}" for i in range(20)])
    images = rng.integers(0, 256, (20, 94, 94, 3), dtype=np.uint8)
    write_pack(tmp_path / "utk" / "images.npy", tmp_path / "utk" / "labels.csv", images, utk)
    write_pack(tmp_path / "dyadic" / "images.npy", tmp_path / "dyadic" / "labels.csv", images, dyadic)
    figure_dir = tmp_path / "figures"

    _execute(
        NOTEBOOKS / "cam.ipynb",
        tmp_path / "cam.ipynb",
        {
            "results_table": str(table_path),
            "checkpoints": [str(path) for path in checkpoints],
            "utk_images": str(tmp_path / "utk" / "images.npy"),
            "utk_labels": str(tmp_path / "utk" / "labels.csv"),
            "dyadic_images": str(tmp_path / "dyadic" / "images.npy"),
            "dyadic_labels": str(tmp_path / "dyadic" / "labels.csv"),
            "faces": 3,
            "seed": 1,
            "figure_dir": str(figure_dir),
        },
    )

    for name in ("utk", "dyadic"):
        for path in figure_paths(figure_dir, "cam", name):
            assert path.is_file(), f"{path} was not written"
    executed = (tmp_path / "cam.ipynb").read_text()
    assert "best HPS" in executed
    assert "best cross-stitch" in executed


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
    good = _write_history(tmp_path / "age+gender" / "hps" / "normal" / "1" / "seed1" / "history.csv", 5, 0)
    bad = tmp_path / "age+gender" / "hps" / "normal" / "2" / "seed1" / "history.csv"
    bad.parent.mkdir(parents=True)
    pd.DataFrame({"epoch": [1, 2], "learning_rate": [0.1, 0.1]}).to_csv(bad, index=False)

    figure = training_curves_figure([good, bad])

    assert "1 without loss columns left out" in figure.get_suptitle()


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
