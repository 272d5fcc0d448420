"""The Snakemake workflow itself: config checks at parse time, the full grid's DAG, and lint."""

from __future__ import annotations

import re

from conftest import run_snakemake


def job_counts(output: str) -> dict[str, int]:
    """Parse the job count table that a dry run prints."""
    return {match[1]: int(match[2]) for match in re.finditer(r"^(\w+)\s+(\d+)$", output, re.MULTILINE)}


def test_full_grid_dry_run(workdir, data_overrides):
    result = run_snakemake(workdir, "-n", "--quiet", "rules", *data_overrides)

    assert result.returncode == 0, result.stderr + result.stdout
    counts = job_counts(result.stdout)
    assert counts["train"] == 252
    assert counts["evaluate"] == 504
    assert counts["dyadic_faces"] == 11
    assert counts["results_table"] == 2


def dry_run_jobs(output: str) -> list[dict[str, str]]:
    """Parse the job blocks of a verbose dry run into dicts of rule, input and output."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", output):
        match = re.match(r"(?:local)?rule (\w+):", block)
        if match:
            fields = dict(re.findall(r"^\s+(input|output): (.*)$", block, re.MULTILINE))
            jobs.append({"rule": match[1], **fields})
    return jobs


def test_cross_stitch_depends_on_baseline(workdir, data_overrides):
    result = run_snakemake(workdir, "-n", "--configfile", "config/small.yaml", *data_overrides)

    assert result.returncode == 0, result.stdout + result.stderr
    train_jobs = [job for job in dry_run_jobs(result.stdout) if job["rule"] == "train"]
    cross_stitch = [job for job in train_jobs if "/cross_stitch/" in job["output"]]
    baseline_outputs = {job["output"].split(", ")[0] for job in train_jobs if "/baseline/" in job["output"]}
    assert len(cross_stitch) == 8
    for job in cross_stitch:
        grouping, seed = re.search(r"results/models/([^/]+)/cross_stitch/\w+/\d+/(seed\d+)/", job["output"]).groups()
        baseline = f"results/models/{grouping}/baseline/none/0/{seed}/model.pt"
        assert baseline in job["input"].split(", "), job
        assert baseline in baseline_outputs


def test_missing_data_path_stops_before_scheduling(workdir, tmp_path):
    result = run_snakemake(workdir, "-n", "--config", f"utkface={tmp_path / 'absent.tar.gz'}")

    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert f"utkface: {tmp_path / 'absent.tar.gz'}" in output
    assert "UTKFace.tar.gz" in output


def test_invalid_config_value_named(workdir, data_overrides):
    result = run_snakemake(workdir, "-n", *data_overrides, "image_size=50")

    assert result.returncode != 0
    assert "config key image_size: 50 is less than the minimum of 94" in result.stdout + result.stderr


def test_lint_clean(workdir, data_overrides):
    result = run_snakemake(workdir, "--lint", *data_overrides)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr
