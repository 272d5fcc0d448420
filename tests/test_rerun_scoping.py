"""Which jobs a change reruns: dry runs against a real, completed tiny run of the workflow.

The tiny run (one grouping, baseline, HPS and cross-stitch at depth 1, 300
UTKFace faces at 94x94, one epoch, one dyadic recording at one frame per
second) executes once per module. Each test then works on its own copy, whose
file times and .snakemake metadata match the run, changes one thing, and
checks the job counts of a dry run.
"""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import copy_workflow

SNAKEMAKE = [sys.executable, "-m", "snakemake"]
RECORDING = {"session_id": "S02", "task": "animals", "view": "FC1", "participants": "P03"}
TINY_CONFIG = {
    "image_size": 94,
    "seeds": [1],
    "groupings": [["age", "gender"]],
    "architectures": {
        "hps": {"placements": ["normal"], "depths": [1]},
        "cross_stitch": {"placements": ["normal"], "depths": [1]},
    },
    "utkface_split": {"subset": 300},
    "training": {"max_epochs": 1, "threads": 1},
    "dyadic_faces": {"fps": 1},
}
UPSTREAM_RULES = ("utkface_labels", "utkface_split", "utkface_pack", "dyadic_faces", "dyadic_merge")


def write_config(workdir: Path, **changes) -> None:
    config = {**TINY_CONFIG, **changes}
    (workdir / "config" / "tiny.yaml").write_text(yaml.safe_dump(config))


def snakemake(workdir: Path, data: list[str], *arguments: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*SNAKEMAKE, "--directory", str(workdir), "--configfile", "config/tiny.yaml", *arguments, "--config", *data],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def dry_run_counts(workdir: Path, data: list[str]) -> dict[str, int]:
    """Return the job count per rule of a dry run; an up-to-date workflow gives an empty dict."""
    result = snakemake(workdir, data, "-n", "--quiet", "rules")
    assert result.returncode == 0, result.stdout + result.stderr
    return {match[1]: int(match[2]) for match in re.finditer(r"^(\w+)\s+(\d+)$", result.stdout, re.MULTILINE) if match[1] != "total"}


@pytest.fixture(scope="module")
def tiny_run(utkface_archive, dyadic_dir, blazeface_dir, tmp_path_factory) -> tuple[Path, list[str]]:
    """Run the workflow once on tiny settings and return its directory and the data overrides."""
    root = tmp_path_factory.mktemp("tiny_run")
    dyadic = root / "dyadic"
    video = Path("videos") / RECORDING["session_id"] / RECORDING["task"] / f"{RECORDING['view']}.mp4"
    (dyadic / video).parent.mkdir(parents=True)
    (dyadic / video).symlink_to(dyadic_dir / video)
    shutil.copy(dyadic_dir / "participants.csv", dyadic / "participants.csv")
    with open(dyadic / "recordings.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["session_id", "task", "view", "video", "participants"])
        writer.writeheader()
        writer.writerow({**RECORDING, "video": str(video)})

    workdir = copy_workflow(root / "workflow")
    write_config(workdir)
    data = [f"utkface={utkface_archive}", f"dyadic={dyadic}", f"blazeface={blazeface_dir}"]

    result = snakemake(workdir, data, "--cores", "2", timeout=600)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    return workdir, data


@pytest.fixture
def run_copy(tiny_run, tmp_path) -> tuple[Path, list[str]]:
    """Return a copy of the completed tiny run that a test may change."""
    workdir, data = tiny_run
    copy = tmp_path / "workflow"
    shutil.copytree(workdir, copy, symlinks=True)
    return copy, data


def test_completed_run_is_up_to_date(run_copy):
    workdir, data = run_copy

    assert dry_run_counts(workdir, data) == {}


def test_notebook_edit_reruns_only_its_jobs(run_copy):
    workdir, data = run_copy
    notebook = workdir / "workflow" / "notebooks" / "results.ipynb"
    notebook.write_text(notebook.read_text().replace("# Results of the multitask configurations", "# Results of every configuration"))

    counts = dry_run_counts(workdir, data)

    assert counts == {"results_notebook": 1, "results_notebook_dyadic": 1, "all": 1}


def test_cam_setting_reruns_only_cam_notebook(run_copy):
    workdir, data = run_copy
    write_config(workdir, analysis={"cam_faces": 2})

    counts = dry_run_counts(workdir, data)

    assert counts == {"cam_notebook": 1, "all": 1}


def test_new_seed_trains_only_new_runs(run_copy):
    workdir, data = run_copy
    write_config(workdir, seeds=[1, 2])

    counts = dry_run_counts(workdir, data)

    assert counts["train"] == 3
    assert counts["evaluate"] == 6
    assert counts["results_table"] == 2
    assert counts["results_notebook"] == 1
    assert counts["results_notebook_dyadic"] == 1
    for rule in (*UPSTREAM_RULES, "dataset_overview"):
        assert rule not in counts, f"adding a seed reran {rule}"


def test_dyadic_setting_reruns_dyadic_side_only(run_copy):
    workdir, data = run_copy
    write_config(workdir, dyadic_faces={"fps": 1, "min_score": 0.7})

    counts = dry_run_counts(workdir, data)

    assert counts["dyadic_faces"] == 1
    assert counts["dyadic_merge"] == 1
    assert counts["evaluate"] == 3, "only the dyadic evaluations should rerun"
    assert counts["results_table"] == 1
    assert counts["results_notebook_dyadic"] == 1
    assert counts["dataset_overview"] == 1
    for rule in ("utkface_labels", "utkface_split", "utkface_pack", "train", "results_notebook"):
        assert rule not in counts, f"a dyadic detection setting reran {rule}"
