"""The workflow config schema: defaults, rejected values, and the data path checks."""

from __future__ import annotations

import copy

import pytest
import yaml

from facemtl.config import ConfigError, check_data_paths, validate_config


@pytest.fixture
def default_config(repo_root):
    with open(repo_root / "config" / "config.yaml") as handle:
        return yaml.safe_load(handle)


def test_default_config_valid(default_config):
    config = validate_config(default_config)

    assert config["image_size"] == 200
    assert config["training"]["eval_batch_size"] == 256
    assert len(config["groupings"]) == 4


def test_empty_config_gets_defaults():
    config = validate_config({})

    assert config["architectures"]["hps"]["depths"] == [1, 2, 3, 4, 5]
    assert config["architectures"]["cross_stitch"]["diagonal"] == 0.9
    assert config["training"]["patience"] == 4


def test_small_config_valid(repo_root, default_config):
    with open(repo_root / "config" / "small.yaml") as handle:
        small = yaml.safe_load(handle)
    merged = copy.deepcopy(default_config)
    for key, value in small.items():
        if isinstance(value, dict):
            merged[key].update(value)
        else:
            merged[key] = value

    config = validate_config(merged)

    assert config["image_size"] == 100


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"training": {"device": "tpu"}}, "config key training.device: invalid value 'tpu'; allowed values: 'auto', 'cpu', 'cuda'"),
        ({"architectures": {"hps": {"placements": ["sideways"]}}}, "architectures.hps.placements.0: invalid value 'sideways'"),
        ({"architectures": {"hps": {"depths": [6]}}}, "architectures.hps.depths.0: 6 is greater than the maximum of 5"),
        ({"image_size": 50}, "config key image_size: 50 is less than the minimum of 94"),
        ({"groupings": [["age", "emotion"]]}, "config key groupings.0: tasks ['emotion'] are not defined"),
        ({"utkface_split": {"validation": 0.5, "test": 0.5}}, "leaves no training faces"),
        ({"trainig": {}}, "'trainig' was unexpected"),
    ],
)
def test_config_rejects_bad_value(default_config, override, message):
    config = copy.deepcopy(default_config)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            for inner, inner_value in value.items():
                if isinstance(inner_value, dict):
                    config[key][inner].update(inner_value)
                else:
                    config[key][inner] = inner_value
        else:
            config[key] = value

    with pytest.raises(ConfigError) as error:
        validate_config(config)

    assert message in str(error.value)


def test_missing_data_paths_named(tmp_path):
    config = validate_config({"utkface": str(tmp_path / "none.tar.gz"), "dyadic": str(tmp_path), "blazeface": str(tmp_path)})

    with pytest.raises(ConfigError) as error:
        check_data_paths(config)

    text = str(error.value)
    assert f"utkface: {tmp_path / 'none.tar.gz'}" in text
    assert "UTKFace.tar.gz" in text
    assert f"dyadic: {tmp_path / 'recordings.csv'} is missing" in text
    assert f"blazeface: {tmp_path / 'blazeface.pth'} is missing" in text


def test_real_data_paths_pass(shared_dir):
    config = validate_config(
        {
            "utkface": str(shared_dir / "data" / "UTKFace.tar.gz"),
            "dyadic": str(shared_dir / "data" / "dyadic"),
            "blazeface": str(shared_dir / "models" / "blazeface"),
        }
    )

    check_data_paths(config)
