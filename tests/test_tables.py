"""Results tables built from metrics JSONs written by facemtl.evaluate."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from facemtl.evaluate import write_metrics
from facemtl.tables import build_results_table, order_metric_columns, write_results_table

TASK_METRICS = {
    "age": ("age_mse", "age_mae"),
    "gender": ("gender_acc", "gender_balanced_acc"),
    "ethnicity": ("ethnicity_acc", "ethnicity_balanced_acc"),
}


def _write_run(directory, architecture, placement, depth, tasks, seed, metrics, participants=None, dataset="utk"):
    """Write one metrics JSON the way evaluate_run does and return its path."""
    summary = {
        "dataset": dataset,
        "split": "test" if dataset == "utk" else None,
        "grouping": "+".join(tasks),
        "architecture": architecture,
        "placement": placement,
        "depth": depth,
        "seed": seed,
        "tasks": list(tasks),
        "n": 100,
        "metrics": metrics,
        "groups": {},
    }
    if participants is not None:
        summary["participants"] = {"n": 4, "metrics": participants}
    path = directory / f"{architecture}_{placement}_{depth}_{'+'.join(tasks)}_{seed}.json"
    write_metrics(summary, path)
    return path


def _metrics(tasks, age_mae=6.0, accuracy=0.8):
    values = {}
    for task in tasks:
        if task == "age":
            values.update(age_mse=age_mae**2 * 1.5, age_mae=age_mae)
        else:
            values.update({f"{task}_acc": accuracy, f"{task}_balanced_acc": accuracy - 0.05})
    return values


def test_table_averages_over_seeds(tmp_path):
    paths = [
        _write_run(tmp_path, "hps", "normal", 2, ["age", "gender"], seed, _metrics(["age", "gender"], age_mae, acc))
        for seed, age_mae, acc in [(0, 5.0, 0.80), (1, 6.0, 0.90), (2, 7.0, 0.85)]
    ]

    table = build_results_table(paths)

    assert len(table) == 1
    row = table.iloc[0]
    assert row["n_runs"] == 3
    assert row["age_mae"] == pytest.approx(6.0)
    assert row["age_mae_std"] == pytest.approx(1.0)
    assert row["gender_acc"] == pytest.approx(0.85)
    assert row["gender_acc_std"] == pytest.approx(0.05)


def test_single_seed_has_nan_std(tmp_path):
    path = _write_run(tmp_path, "baseline", "none", None, ["age", "gender"], 0, _metrics(["age", "gender"]))

    row = build_results_table([path]).iloc[0]

    assert row["n_runs"] == 1
    assert math.isnan(row["age_mae_std"])


def test_absent_tasks_are_nan(tmp_path):
    paths = [
        _write_run(tmp_path, "baseline", "none", None, ["age", "gender"], 0, _metrics(["age", "gender"])),
        _write_run(tmp_path, "baseline", "none", None, ["gender", "ethnicity"], 0, _metrics(["gender", "ethnicity"])),
    ]

    table = build_results_table(paths).set_index("tasks")

    assert math.isnan(table.loc["age+gender", "ethnicity_acc"])
    assert math.isnan(table.loc["gender+ethnicity", "age_mae"])
    assert table.loc["gender+ethnicity", "ethnicity_acc"] == pytest.approx(0.8)


def test_metric_columns_in_task_order(tmp_path):
    tasks = ["age", "gender", "ethnicity"]
    path = _write_run(tmp_path, "baseline", "none", None, tasks, 0, _metrics(tasks))

    table = build_results_table([path])

    assert list(table.columns) == [
        "architecture", "placement", "depth", "tasks",
        "age_mse", "age_mse_std", "age_mae", "age_mae_std",
        "gender_acc", "gender_acc_std", "gender_balanced_acc", "gender_balanced_acc_std",
        "ethnicity_acc", "ethnicity_acc_std", "ethnicity_balanced_acc", "ethnicity_balanced_acc_std",
        "n_runs", "delta_m",
    ]  # fmt: skip


def test_order_metric_columns_puts_unknown_tasks_last():
    names = ["emotion_acc", "ethnicity_balanced_acc", "age_mae", "ethnicity_acc", "age_mse"]

    assert order_metric_columns(names) == ["age_mse", "age_mae", "ethnicity_acc", "ethnicity_balanced_acc", "emotion_acc"]


def test_rows_in_thesis_order(tmp_path):
    groupings = [["age", "gender", "ethnicity"], ["gender", "ethnicity"], ["age", "ethnicity"], ["age", "gender"]]
    configurations = [("cross_stitch", "backwards"), ("hps", "backwards"), ("cross_stitch", "normal"), ("hps", "normal")]
    paths = []
    for tasks in groupings:
        paths.append(_write_run(tmp_path, "baseline", "none", None, tasks, 0, _metrics(tasks)))
        for architecture, placement in configurations:
            for depth in (3, 1, 2):
                paths.append(_write_run(tmp_path, architecture, placement, depth, tasks, 0, _metrics(tasks)))

    table = build_results_table(paths)

    blocks = table[["architecture", "placement"]].drop_duplicates().apply(tuple, axis=1).tolist()
    assert blocks == [
        ("baseline", "none"),
        ("hps", "normal"),
        ("hps", "backwards"),
        ("cross_stitch", "normal"),
        ("cross_stitch", "backwards"),
    ]
    hps_normal = table[(table["architecture"] == "hps") & (table["placement"] == "normal")]
    assert hps_normal["tasks"].drop_duplicates().tolist() == [
        "age+gender",
        "age+ethnicity",
        "gender+ethnicity",
        "age+gender+ethnicity",
    ]
    assert hps_normal["depth"].tolist()[:3] == [1, 2, 3]


def test_delta_m_against_grouping_baseline(tmp_path):
    tasks = ["age", "gender"]
    paths = [
        _write_run(tmp_path, "baseline", "none", None, tasks, 0, _metrics(tasks, 6.0, 0.80)),
        _write_run(tmp_path, "baseline", "none", None, tasks, 1, _metrics(tasks, 6.0, 0.80)),
        # Seed means: age MAE 5.4 (10 % better), gender accuracy 0.84 (5 % better).
        _write_run(tmp_path, "hps", "normal", 1, tasks, 0, _metrics(tasks, 5.2, 0.82)),
        _write_run(tmp_path, "hps", "normal", 1, tasks, 1, _metrics(tasks, 5.6, 0.86)),
        _write_run(tmp_path, "hps", "backwards", 1, tasks, 0, _metrics(tasks, 6.6, 0.72)),
    ]

    table = build_results_table(paths).set_index(["architecture", "placement"])

    assert table.loc[("baseline", "none"), "delta_m"] == pytest.approx(0.0)
    assert table.loc[("hps", "normal"), "delta_m"] == pytest.approx(7.5)
    assert table.loc[("hps", "backwards"), "delta_m"] < 0


def test_delta_m_nan_without_baseline(tmp_path):
    tasks = ["age", "ethnicity"]
    path = _write_run(tmp_path, "hps", "normal", 1, tasks, 0, _metrics(tasks))

    table = build_results_table([path])

    assert math.isnan(table.loc[0, "delta_m"])


def test_dyadic_table_has_participant_columns(tmp_path):
    tasks = ["age", "gender"]
    paths = [
        _write_run(tmp_path, "baseline", "none", None, tasks, 0, _metrics(tasks, 8.0, 0.7), _metrics(tasks, 7.0, 0.75), "dyadic"),
        _write_run(tmp_path, "hps", "normal", 1, tasks, 0, _metrics(tasks, 8.0, 0.7), _metrics(tasks, 6.3, 0.75), "dyadic"),
    ]

    frame = build_results_table(paths)
    participant = build_results_table(paths, level="participant")

    assert frame.loc[1, "participant_age_mae"] == pytest.approx(6.3)
    assert "participant_gender_acc_std" in frame.columns
    # Age 10 % better, gender equal: (10 + 0) / 2.
    assert frame.loc[1, "participant_delta_m"] == pytest.approx(5.0)
    assert frame.loc[1, "delta_m"] == pytest.approx(0.0)
    assert participant.loc[1, "age_mae"] == pytest.approx(6.3)
    assert not any(column.startswith("participant_") for column in participant.columns)


def test_participant_level_needs_dyadic_runs(tmp_path):
    path = _write_run(tmp_path, "baseline", "none", None, ["age"], 0, _metrics(["age"]))

    with pytest.raises(ValueError, match="no participant metrics"):
        build_results_table([path], level="participant")


def test_nan_metrics_from_empty_pack(tmp_path):
    tasks = ["age", "gender"]
    empty = {key: math.nan for key in _metrics(tasks)}
    path = _write_run(tmp_path, "baseline", "none", None, tasks, 0, empty, empty, "dyadic")

    assert "NaN" not in path.read_text()
    assert json.loads(path.read_text())["metrics"]["age_mae"] is None
    row = build_results_table([path]).iloc[0]
    assert math.isnan(row["age_mae"])
    assert math.isnan(row["participant_gender_acc"])


def test_duplicate_run_rejected(tmp_path):
    tasks = ["age"]
    first = _write_run(tmp_path, "baseline", "none", None, tasks, 0, _metrics(tasks))
    copy = tmp_path / "copy.json"
    copy.write_text(first.read_text())

    with pytest.raises(ValueError, match="same run"):
        build_results_table([first, copy])


def test_mixed_datasets_rejected(tmp_path):
    tasks = ["age"]
    paths = [
        _write_run(tmp_path, "baseline", "none", None, tasks, 0, _metrics(tasks), dataset="utk"),
        _write_run(tmp_path, "baseline", "none", None, tasks, 1, _metrics(tasks), _metrics(tasks), dataset="dyadic"),
    ]

    with pytest.raises(ValueError, match="mix datasets"):
        build_results_table(paths)


def test_empty_metrics_list_gives_empty_table():
    table = build_results_table([])

    assert table.empty
    assert "delta_m" in table.columns


def test_write_results_table_formats(tmp_path):
    tasks = ["age", "gender"]
    paths = [
        _write_run(tmp_path, "baseline", "none", None, tasks, seed, _metrics(tasks, 6.0 + seed, 0.8)) for seed in (0, 1)
    ] + [_write_run(tmp_path, "cross_stitch", "backwards", 2, tasks, 0, _metrics(tasks, 5.0, 0.9))]
    table = build_results_table(paths)
    out = tmp_path / "out"

    write_results_table(table, out / "table.csv", out / "table.md", out / "table.tex")

    written = pd.read_csv(out / "table.csv")
    assert written.shape == table.shape
    markdown = (out / "table.md").read_text()
    assert "6.500 ± 0.707" in markdown
    assert "| cross_stitch" in markdown
    latex = (out / "table.tex").read_text()
    assert r"\begin{tabular}" in latex
    assert r"6.500 $\pm$ 0.707" in latex
    assert r"cross\_stitch" in latex
    assert r"age\_mae" in latex


# Evaluation of a real, untrained checkpoint: the metrics JSON it writes feeds the tables above.

TASK_SETTINGS = {
    "age": {"kind": "regression", "column": "age", "loss": "mse"},
    "gender": {"kind": "binary", "column": "gender", "classes": 2, "loss": "bce"},
    "ethnicity": {"kind": "multiclass", "column": "ethnicity", "classes": 5, "loss": "cross_entropy"},
}
IMAGE_SIZE = 22


def _save_checkpoint(path, architecture="hps", placement="normal", depth=1, seed=0):
    torch = pytest.importorskip("torch")
    from facemtl.models import model_from_settings

    settings = {
        "grouping": ["age", "gender", "ethnicity"],
        "architecture": architecture,
        "placement": placement,
        "depth": depth,
        "seed": seed,
        "tasks": TASK_SETTINGS,
        "image_size": IMAGE_SIZE,
        "model": {"channels": [4, 4, 4], "hidden": [8]},
    }
    model = model_from_settings(settings, seed=seed)
    torch.save({"state_dict": model.state_dict(), "settings": settings}, path)
    return path


def _write_dyadic_pack(directory, frames_per_participant=3):
    from facemtl.packed import write_pack

    rng = np.random.default_rng(0)
    participants = [("P01", 40, 0, 2), ("P02", 32, 1, 0)]
    rows = [
        {"participant_id": pid, "session_id": "S01", "task": "talk", "view": f"FC{i + 1}", "frame_index": frame,
         "age": age, "gender": gender, "ethnicity": ethnicity}
        for i, (pid, age, gender, ethnicity) in enumerate(participants)
        for frame in range(frames_per_participant)
    ]  # fmt: skip
    labels = pd.DataFrame(rows, columns=["participant_id", "session_id", "task", "view", "frame_index", "age", "gender", "ethnicity"])
    images = rng.integers(0, 256, size=(len(labels), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    write_pack(directory / "images.npy", directory / "labels.csv", images, labels)
    return directory / "images.npy", directory / "labels.csv"


def test_evaluate_run_on_utk_test_split(tmp_path):
    from facemtl.evaluate import evaluate_run
    from facemtl.packed import write_pack

    rng = np.random.default_rng(1)
    labels = pd.DataFrame(
        {
            "file": [f"{i}.jpg" for i in range(10)],
            "age": rng.integers(1, 90, 10),
            "gender": rng.integers(0, 2, 10),
            "ethnicity": rng.integers(0, 5, 10),
            "split": ["train"] * 4 + ["test"] * 6,
        }
    )
    images = rng.integers(0, 256, size=(10, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    write_pack(tmp_path / "images.npy", tmp_path / "labels.csv", images, labels)
    checkpoint = _save_checkpoint(tmp_path / "model.pt")

    evaluate_run(
        checkpoint, tmp_path / "images.npy", tmp_path / "labels.csv",
        tmp_path / "predictions.csv", tmp_path / "metrics.json", dataset="utk", split="test", batch_size=4,
    )  # fmt: skip

    predictions = pd.read_csv(tmp_path / "predictions.csv")
    assert predictions["row"].tolist() == [4, 5, 6, 7, 8, 9]
    assert (predictions["split"] == "test").all()
    probabilities = predictions[[f"ethnicity_prob_{k}" for k in range(5)]].sum(axis=1)
    assert probabilities.to_numpy() == pytest.approx(np.ones(6))
    assert predictions["gender_prob"].between(0, 1).all()

    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert summary["n"] == 6
    assert summary["architecture"] == "hps"
    assert summary["grouping"] == "age+gender+ethnicity"
    assert summary["tasks"] == ["age", "gender", "ethnicity"]
    assert "participants" not in summary
    expected_mae = float(np.mean(np.abs(predictions["age_pred"] - predictions["age"])))
    assert summary["metrics"]["age_mae"] == pytest.approx(expected_mae)
    assert summary["groups"]["n@gender=male"] + summary["groups"]["n@gender=female"] == 6

    table = build_results_table([tmp_path / "metrics.json"])
    assert table.loc[0, "age_mae"] == pytest.approx(expected_mae)


def test_evaluate_run_on_dyadic_pack(tmp_path):
    from facemtl.evaluate import evaluate_run

    images, labels = _write_dyadic_pack(tmp_path)
    checkpoint = _save_checkpoint(tmp_path / "model.pt", architecture="cross_stitch", placement="backwards", depth=2)

    evaluate_run(checkpoint, images, labels, tmp_path / "p.csv", tmp_path / "m.json", dataset="dyadic", split=None)

    summary = json.loads((tmp_path / "m.json").read_text())
    predictions = pd.read_csv(tmp_path / "p.csv")
    assert summary["n"] == 6
    assert summary["participants"]["n"] == 2
    participant_ages = predictions.groupby("participant_id")["age_pred"].mean()
    expected = np.mean(np.abs(participant_ages.to_numpy() - np.array([40, 32])))
    assert summary["participants"]["metrics"]["age_mae"] == pytest.approx(expected)
    assert {"participant_id", "session_id", "view", "frame_index"} <= set(predictions.columns)


def test_evaluate_run_on_empty_dyadic_pack(tmp_path, caplog):
    from facemtl.evaluate import evaluate_run

    images, labels = _write_dyadic_pack(tmp_path, frames_per_participant=0)
    checkpoint = _save_checkpoint(tmp_path / "model.pt")

    evaluate_run(checkpoint, images, labels, tmp_path / "p.csv", tmp_path / "m.json", dataset="dyadic", split=None)

    summary = json.loads((tmp_path / "m.json").read_text())
    assert summary["n"] == 0
    assert summary["participants"]["n"] == 0
    assert all(value is None for value in summary["metrics"].values())
    assert pd.read_csv(tmp_path / "p.csv").empty
    assert "no face images" in caplog.text


def test_evaluate_run_rejects_empty_utk_split(tmp_path):
    from facemtl.evaluate import evaluate_run
    from facemtl.packed import write_pack

    labels = pd.DataFrame({"age": [30], "gender": [0], "ethnicity": [1], "split": ["train"]})
    write_pack(tmp_path / "images.npy", tmp_path / "labels.csv", np.zeros((1, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8), labels)
    checkpoint = _save_checkpoint(tmp_path / "model.pt")

    with pytest.raises(ValueError, match="no rows to evaluate for split 'test'"):
        evaluate_run(
            checkpoint, tmp_path / "images.npy", tmp_path / "labels.csv",
            tmp_path / "p.csv", tmp_path / "m.json", dataset="utk", split="test",
        )  # fmt: skip


def test_evaluate_run_is_deterministic(tmp_path):
    from facemtl.evaluate import evaluate_run

    images, labels = _write_dyadic_pack(tmp_path)
    checkpoint = _save_checkpoint(tmp_path / "model.pt")

    for name in ("a", "b"):
        evaluate_run(checkpoint, images, labels, tmp_path / f"{name}.csv", tmp_path / f"{name}.json", "dyadic", None)

    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()
    assert (tmp_path / "a.json").read_text() == (tmp_path / "b.json").read_text()
