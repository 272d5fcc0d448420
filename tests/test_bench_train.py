"""Tests of the training benchmark command on tiny real runs (no timing goals are checked)."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from facemtl.bench_train import BREAKDOWN_GROUPS, main, prepare_training, time_breakdown

SIZE = 94  # smallest image size for five valid blocks


def test_time_breakdown_covers_step():
    train, _ = prepare_training("baseline", 0, "none", SIZE, 8, 1, 4, torch.device("cpu"), "fp32")
    shares = dict(time_breakdown(train))

    assert list(shares) == [group for group, _ in BREAKDOWN_GROUPS] + ["everything else"]
    for group, _ in BREAKDOWN_GROUPS:
        assert shares[group] > 0, f"{group} took no time"
    assert sum(shares.values()) >= 0.99


def test_bench_replaces_own_section(tmp_path: Path):
    output = tmp_path / "benchmarks.md"
    output.write_text("# Benchmarks\n\n## Training throughput\n\nold numbers\n\n## Face detection\n\nkept\n")

    arguments = ["--sizes", str(SIZE), "--batch-size", "8", "--batches", "1", "--repeats", "1"]
    arguments += ["--micro-batch", "4", "--precisions", "fp32", "--device", "cpu", "--output", str(output)]
    main(arguments)
    text = output.read_text()

    assert "old numbers" not in text
    assert "## Face detection\n\nkept\n" in text
    assert re.search(r"^\| baseline \| 94 \| fp32 \| [0-9.]+ \|", text, flags=re.MULTILINE)
    assert "### Where the time goes" in text
    assert re.search(r"^\| max-pooling backward \| \d+% \|$", text, flags=re.MULTILINE)
