"""Metrics against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from facemtl.metrics import (
    accuracy,
    aggregate_by_participant,
    balanced_accuracy,
    delta_m,
    group_metrics,
    mae,
    main_metric,
    mse,
    participant_metrics,
    predicted_labels,
    task_metrics,
)
from facemtl.tasks import Task

AGE = Task("age", "regression", "age", loss="mse")
GENDER = Task("gender", "binary", "gender", classes=2, loss="bce")
ETHNICITY = Task("ethnicity", "multiclass", "ethnicity", classes=5, loss="cross_entropy")


def test_regression_errors_by_hand():
    truth = np.array([20, 30, 40])
    predicted = np.array([22.0, 27.0, 40.0])

    # Errors 2, -3, 0: squares 4, 9, 0 and absolute values 2, 3, 0.
    assert mse(truth, predicted) == pytest.approx(13 / 3)
    assert mae(truth, predicted) == pytest.approx(5 / 3)


def test_accuracy_and_balanced_accuracy_by_hand():
    truth = np.array([0, 0, 0, 0, 1, 1])
    predicted = np.array([0, 0, 0, 0, 0, 1])

    assert accuracy(truth, predicted) == pytest.approx(5 / 6)
    # Recall of class 0 is 4/4 and of class 1 is 1/2.
    assert balanced_accuracy(truth, predicted) == pytest.approx(0.75)


def test_balanced_accuracy_ignores_classes_absent_from_truth():
    truth = np.array([0, 0, 2, 2])
    predicted = np.array([0, 1, 2, 4])

    # Classes 1 and 4 occur only among predictions: recalls are 1/2 (class 0) and 1/2 (class 2).
    assert balanced_accuracy(truth, predicted) == pytest.approx(0.5)


def test_metrics_of_empty_input_are_nan():
    empty = np.array([])

    assert math.isnan(mse(empty, empty))
    assert math.isnan(mae(empty, empty))
    assert math.isnan(accuracy(empty, empty))
    assert math.isnan(balanced_accuracy(empty, empty))


def test_metric_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="shape"):
        mae(np.zeros(3), np.zeros(4))


def test_binary_threshold_is_inclusive():
    labels = predicted_labels(GENDER, np.array([0.49, 0.5, 0.51]))

    assert labels.tolist() == [0, 1, 1]


def test_multiclass_labels_take_argmax():
    probabilities = np.array([[0.1, 0.6, 0.1, 0.1, 0.1], [0.3, 0.1, 0.1, 0.1, 0.4]])

    assert predicted_labels(ETHNICITY, probabilities).tolist() == [1, 4]


def test_task_metrics_keys_and_values():
    truth = pd.DataFrame({"age": [10, 20, 30, 40], "gender": [0, 1, 1, 0], "ethnicity": [0, 1, 2, 2]})
    predictions = {
        "age": np.array([12.0, 20.0, 26.0, 40.0]),
        "gender": np.array([0.2, 0.7, 0.4, 0.1]),
        "ethnicity": np.eye(5)[[0, 1, 2, 0]],
    }

    metrics = task_metrics([AGE, GENDER, ETHNICITY], truth, predictions)

    assert set(metrics) == {
        "age_mse",
        "age_mae",
        "gender_acc",
        "gender_balanced_acc",
        "ethnicity_acc",
        "ethnicity_balanced_acc",
    }
    assert metrics["age_mse"] == pytest.approx((4 + 0 + 16 + 0) / 4)
    assert metrics["age_mae"] == pytest.approx((2 + 0 + 4 + 0) / 4)
    # Gender decisions 0, 1, 0, 0: one female frame missed.
    assert metrics["gender_acc"] == pytest.approx(3 / 4)
    assert metrics["gender_balanced_acc"] == pytest.approx((1.0 + 0.5) / 2)
    # Ethnicity decisions 0, 1, 2, 0: class 2 has recall 1/2.
    assert metrics["ethnicity_acc"] == pytest.approx(3 / 4)
    assert metrics["ethnicity_balanced_acc"] == pytest.approx((1.0 + 1.0 + 0.5) / 3)


def test_task_metrics_rejects_missing_labels():
    truth = pd.DataFrame({"age": [10.0, None]})

    with pytest.raises(ValueError, match="missing"):
        task_metrics([AGE], truth, {"age": np.array([10.0, 20.0])})


def test_task_metrics_rejects_missing_predictions():
    truth = pd.DataFrame({"age": [10]})

    with pytest.raises(ValueError, match="no predictions for task 'age'"):
        task_metrics([AGE], truth, {})


def test_task_metrics_of_empty_table_are_nan():
    truth = pd.DataFrame({"age": [], "ethnicity": []})
    predictions = {"age": np.zeros(0), "ethnicity": np.zeros((0, 5))}

    metrics = task_metrics([AGE, ETHNICITY], truth, predictions)

    assert all(math.isnan(value) for value in metrics.values())


def test_group_metrics_splits_by_gender_and_ethnicity():
    truth = pd.DataFrame({"age": [10, 20, 30, 40], "gender": [0, 0, 1, 1], "ethnicity": [1, 1, 1, 3]})
    predictions = {"age": np.array([11.0, 22.0, 30.0, 44.0])}

    groups = group_metrics([AGE], truth, predictions)

    assert groups["n@gender=male"] == 2
    assert groups["n@gender=female"] == 2
    assert groups["age_mae@gender=male"] == pytest.approx(1.5)
    assert groups["age_mae@gender=female"] == pytest.approx(2.0)
    assert groups["n@ethnicity=Black"] == 3
    assert groups["age_mae@ethnicity=Black"] == pytest.approx(1.0)
    assert groups["age_mse@ethnicity=Indian"] == pytest.approx(16.0)
    # Groups without rows still appear, so every run has the same keys.
    assert groups["n@ethnicity=White"] == 0
    assert math.isnan(groups["age_mae@ethnicity=White"])
    assert "n@ethnicity=unknown" not in groups


def test_group_metrics_counts_unknown_codes():
    truth = pd.DataFrame({"age": [10, 20], "gender": [0, 0], "ethnicity": [0, 7]})

    groups = group_metrics([AGE], truth, {"age": np.array([10.0, 20.0])})

    assert groups["n@ethnicity=unknown"] == 1
    assert groups["n@ethnicity=White"] == 1


def _two_participants() -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    truth = pd.DataFrame(
        {
            "participant_id": ["P2", "P1", "P2", "P1", "P2", "P1"],
            "age": [30, 50, 30, 50, 30, 50],
            "gender": [1, 0, 1, 0, 1, 0],
            "ethnicity": [2, 0, 2, 0, 2, 0],
        }
    )
    ethnicity = np.full((6, 5), 0.0)
    # P1 frames vote White, Black, Black, but their mean probability favours White.
    ethnicity[[1, 3, 5]] = [
        [0.9, 0.1, 0.0, 0.0, 0.0],
        [0.3, 0.4, 0.1, 0.1, 0.1],
        [0.3, 0.4, 0.1, 0.1, 0.1],
    ]
    ethnicity[[0, 2, 4]] = [0.0, 0.0, 1.0, 0.0, 0.0]
    predictions = {
        "age": np.array([27.0, 56.0, 30.0, 50.0, 36.0, 47.0]),
        "gender": np.array([0.6, 0.4, 0.4, 0.7, 0.7, 0.2]),
        "ethnicity": ethnicity,
    }
    return truth, predictions


def test_participant_aggregation_by_hand():
    truth, predictions = _two_participants()

    participant_truth, merged = aggregate_by_participant([AGE, GENDER, ETHNICITY], truth, predictions)

    assert participant_truth["participant_id"].tolist() == ["P1", "P2"]
    assert participant_truth["age"].tolist() == [50, 30]
    # P1: ages 56, 50, 47; P2: ages 27, 30, 36.
    assert merged["age"] == pytest.approx([51.0, 31.0])
    assert merged["gender"] == pytest.approx([(0.4 + 0.7 + 0.2) / 3, (0.6 + 0.4 + 0.7) / 3])
    assert merged["ethnicity"][0] == pytest.approx([0.5, 0.3, 0.2 / 3, 0.2 / 3, 0.2 / 3])


def test_participant_metrics_by_hand():
    truth, predictions = _two_participants()

    n, metrics = participant_metrics([AGE, GENDER, ETHNICITY], truth, predictions)

    assert n == 2
    assert metrics["age_mae"] == pytest.approx(1.0)
    assert metrics["age_mse"] == pytest.approx(1.0)
    # Mean gender probabilities 0.433 (P1, male) and 0.567 (P2, female) are both right,
    # although frame-level decisions get one frame of each participant wrong.
    assert metrics["gender_acc"] == pytest.approx(1.0)
    assert metrics["ethnicity_acc"] == pytest.approx(1.0)


def test_participant_aggregation_rejects_conflicting_labels():
    truth, predictions = _two_participants()
    truth.loc[0, "age"] = 31

    with pytest.raises(ValueError, match="different 'age' labels"):
        aggregate_by_participant([AGE], truth, predictions)


def test_participant_metrics_of_no_frames():
    truth = pd.DataFrame({"participant_id": [], "age": []})

    n, metrics = participant_metrics([AGE], truth, {"age": np.zeros(0)})

    assert n == 0
    assert math.isnan(metrics["age_mae"])


def test_main_metric_per_kind():
    assert main_metric(AGE) == "age_mae"
    assert main_metric(GENDER) == "gender_acc"
    assert main_metric(ETHNICITY) == "ethnicity_acc"


def test_delta_m_value_by_hand():
    baseline = {"age_mae": 6.0, "gender_acc": 0.80}
    model = {"age_mae": 5.4, "gender_acc": 0.84}

    # Age: -(5.4 - 6) / 6 = +10 %, gender: (0.84 - 0.80) / 0.80 = +5 %.
    assert delta_m(model, baseline, [AGE, GENDER]) == pytest.approx(7.5)


def test_delta_m_sign_follows_direction():
    baseline = {"age_mae": 6.0, "gender_acc": 0.8, "ethnicity_acc": 0.7}
    better = {"age_mae": 5.5, "gender_acc": 0.85, "ethnicity_acc": 0.75}
    worse = {"age_mae": 6.5, "gender_acc": 0.75, "ethnicity_acc": 0.65}
    tasks = [AGE, GENDER, ETHNICITY]

    assert delta_m(better, baseline, tasks) > 0
    assert delta_m(worse, baseline, tasks) < 0
    assert delta_m(baseline, baseline, tasks) == 0.0


def test_delta_m_is_nan_without_baseline_value():
    assert math.isnan(delta_m({"age_mae": 5.0}, {}, [AGE]))
    assert math.isnan(delta_m({"age_mae": 5.0}, {"age_mae": 0.0}, [AGE]))
