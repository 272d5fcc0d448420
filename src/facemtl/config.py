"""Validation of the workflow config and checks of the data paths it names."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """An invalid config value or a missing data path."""


def load_schema(path: Path = SCHEMA_PATH) -> dict[str, Any]:
    with open(path) as handle:
        return yaml.safe_load(handle)


def _fill_defaults(validator_class: type) -> type:
    """Extend a jsonschema validator class so that validating also fills in defaults.

    Defaults are copied, so one validated config never shares a list with the schema.
    """
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def _describe(error: jsonschema.ValidationError) -> str:
    key = ".".join(str(part) for part in error.absolute_path) or "(top level)"
    if error.validator == "enum":
        allowed = ", ".join(repr(value) for value in error.validator_value)
        return f"config key {key}: invalid value {error.instance!r}; allowed values: {allowed}"
    if error.validator == "additionalProperties":
        allowed = ", ".join(sorted(error.schema.get("properties", {})))
        return f"config key {key}: {error.message}; allowed keys: {allowed}"
    return f"config key {key}: {error.message}"


def validate_config(config: dict[str, Any], schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """Validate ``config`` in place against the schema, fill in defaults, and return it.

    Raises ConfigError naming every invalid key, its value and, for choices, the
    allowed values. Cross-key rules that JSON Schema cannot express (groupings
    naming undefined tasks, split fractions above 1) are checked here too.
    """
    schema = schema or load_schema()
    validator = _fill_defaults(jsonschema.Draft202012Validator)(schema)
    errors = sorted(validator.iter_errors(config), key=lambda error: list(error.absolute_path))
    problems = [_describe(error) for error in errors]

    if not problems:
        problems += _check_cross_keys(config)
    if problems:
        raise ConfigError("invalid workflow config:\n  " + "\n  ".join(problems))
    return config


def _check_cross_keys(config: dict[str, Any]) -> list[str]:
    problems = []
    tasks = config["tasks"]
    for index, grouping in enumerate(config["groupings"]):
        unknown = [name for name in grouping if name not in tasks]
        if unknown:
            problems.append(
                f"config key groupings.{index}: tasks {unknown} are not defined under 'tasks' "
                f"(defined: {', '.join(tasks)})"
            )
    for name, task in tasks.items():
        if task["kind"] == "multiclass" and "classes" not in task:
            problems.append(f"config key tasks.{name}: a multiclass task needs 'classes'")

    split = config["utkface_split"]
    if split["validation"] + split["test"] >= 1:
        problems.append(
            "config keys utkface_split.validation + utkface_split.test: "
            f"{split['validation']} + {split['test']} leaves no training faces; make their sum below 1"
        )
    return problems


DATA_HELP = {
    "utkface": (
        "Download the aligned-and-cropped UTKFace archive (UTKFace.tar.gz) from the dataset's page "
        "(https://susanqq.github.io/UTKFace/; non-commercial research use only), or point the key at the "
        "directory it extracts to"
    ),
    "dyadic": (
        "Point the key at a directory with recordings.csv, participants.csv and the videos that "
        "recordings.csv names (see the README's section on the dyadic data)"
    ),
    "blazeface": (
        "Point the key at a directory with blazeface.pth and anchors.npy (blazefaceback.pth and anchorsback.npy "
        "for the back model), the BlazeFace weights that "
        "face_alignment's BlazeFaceDetector loads (Apache-2.0, from the BlazeFace-PyTorch repository)"
    ),
}


def check_data_paths(config: dict[str, Any], keys: tuple[str, ...] = ("utkface", "dyadic", "blazeface")) -> None:
    """Raise ConfigError for each data path in ``keys`` that does not exist.

    The blazeface directory is checked only when the blazeface detector is selected.
    """
    problems = []
    for key in keys:
        if key == "blazeface" and config["dyadic_faces"]["detector"] != "blazeface":
            continue
        path = Path(config[key])
        if not path.exists():
            problems.append(f"{key}: {path} (resolved {path.resolve()}) does not exist. {DATA_HELP[key]}.")
            continue
        if key == "dyadic":
            problems += [
                f"dyadic: {path / name} is missing. {DATA_HELP[key]}."
                for name in ("recordings.csv", "participants.csv")
                if not (path / name).is_file()
            ]
        if key == "blazeface":
            back = config["dyadic_faces"]["blazeface_model"] == "back"
            names = ("blazefaceback.pth", "anchorsback.npy") if back else ("blazeface.pth", "anchors.npy")
            problems += [
                f"blazeface: {path / name} is missing. {DATA_HELP[key]}."
                for name in names
                if not (path / name).is_file()
            ]
    if problems:
        raise ConfigError(
            "data not found; set the paths in config/config.yaml or on the command line "
            "(snakemake --config utkface=... dyadic=... blazeface=...):\n  " + "\n  ".join(problems)
        )
