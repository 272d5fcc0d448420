"""The workflow profiles: profiles/default (loaded automatically) and profiles/slurm.

The SLURM profile is checked without a cluster: snakemake parses it, a dry run
shows the resources each job would be submitted with, and the installed
snakemake-executor-plugin-slurm turns those resources into sbatch options.
.ci/slurm-test runs it on a real one-node cluster.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from snakemake.cli import get_argument_parser
from snakemake.iocontainers import ResourceList

from conftest import run_snakemake

PROFILES = ["default", "slurm"]
GPU_RULES = {"train", "evaluate"}


def read_profile(repo_root: Path, name: str) -> dict:
    return yaml.safe_load((repo_root / "profiles" / name / "config.yaml").read_text())


def job_resources(output: str) -> list[tuple[str, dict[str, str]]]:
    """Parse a dry run's job blocks into (rule, resources) pairs."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", output):
        rule = re.match(r"(?:local)?rule (\w+):", block)
        resources = re.search(r"^\s+resources: (.*)$", block, re.MULTILINE)
        if rule and resources:
            pairs = (item.partition("=") for item in resources[1].split(", "))
            jobs.append((rule[1], {key: value for key, _, value in pairs}))
    return jobs


@pytest.mark.parametrize("name", PROFILES)
def test_profile_keys_are_snakemake_options(repo_root, name):
    profile = read_profile(repo_root, name)
    # The parser includes the options of installed executor plugins, e.g. --slurm-status-command.
    options = get_argument_parser()._option_string_actions

    assert isinstance(profile, dict) and profile, f"profiles/{name}/config.yaml is empty or not a mapping"
    for key in profile:
        assert f"--{key}" in options, f"profiles/{name}/config.yaml: {key} is not a snakemake option"


def test_slurm_profile_gpu_settings(repo_root):
    profile = read_profile(repo_root, "slurm")

    assert profile["executor"] == "slurm"
    assert "gpu" not in profile["default-resources"]
    assert profile["default-resources"]["slurm_partition"] != profile["set-resources"]["train"]["slurm_partition"]
    for rule in GPU_RULES:
        settings = profile["set-resources"][rule]
        assert settings["gpu"] == 1, f"{rule}: gpu is {settings.get('gpu')}"
        assert "gpu_model" in settings, f"{rule}: no gpu_model entry to set"
        assert isinstance(settings["runtime"], int), f"{rule}: runtime {settings.get('runtime')} is not minutes"


@pytest.mark.parametrize("rule", sorted(GPU_RULES))
def test_slurm_plugin_submits_profile_gpu_request(repo_root, rule):
    """The installed plugin reads the resource names that the profile sets, and sbatch gets --gpus."""
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    profile = read_profile(repo_root, "slurm")
    resources = {**profile["default-resources"], **profile["set-resources"][rule]}

    assert set_gres_string(SimpleNamespace(resources=ResourceList(fromdict=resources))) == " --gpus=1"
    resources["gpu_model"] = "h100"
    assert set_gres_string(SimpleNamespace(resources=ResourceList(fromdict=resources))) == " --gpus=h100:1"


def test_slurm_plugin_cpu_stage_requests_no_gpu(repo_root):
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    profile = read_profile(repo_root, "slurm")

    assert set_gres_string(SimpleNamespace(resources=ResourceList(fromdict=profile["default-resources"]))) == ""


def test_default_profile_loaded_automatically(workdir, data_overrides):
    result = run_snakemake(workdir, "-n", "--quiet", "rules", "--configfile", "config/small.yaml", *data_overrides)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "workflow specific profile profiles/default" in result.stderr


def test_slurm_profile_dry_run_resources(workdir, data_overrides):
    result = run_snakemake(
        workdir,
        "-n",
        "--workflow-profile",
        "profiles/slurm",
        "--configfile",
        "config/small.yaml",
        *data_overrides,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "workflow specific profile profiles/slurm" in result.stderr
    jobs = job_resources(result.stdout)
    rules = {rule for rule, _ in jobs}
    assert GPU_RULES <= rules
    assert len(rules - GPU_RULES) >= 5, rules
    for rule, resources in jobs:
        if rule in GPU_RULES:
            assert resources.get("gpu") == "1", (rule, resources)
            assert resources.get("slurm_partition") == "gpu", (rule, resources)
        else:
            assert "gpu" not in resources, (rule, resources)
            assert resources.get("slurm_partition") == "cpu", (rule, resources)
        assert resources.get("runtime", "").isdigit(), (rule, resources)


@pytest.mark.parametrize("name", PROFILES)
def test_lint_clean_with_profile(workdir, data_overrides, name):
    result = run_snakemake(workdir, "--lint", "--workflow-profile", f"profiles/{name}", *data_overrides)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr
