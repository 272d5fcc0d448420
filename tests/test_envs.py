"""Static checks of the conda environments in envs/ against the code their rules run.

Conda channels may be unreachable where the tests run, so the environments are
never built here. Instead, for every rule with a ``conda:`` directive, the tests
collect the third-party imports of its script, of the notebooks in its input, and
of every facemtl module those import (transitively). They then check that the
environment lists each imported distribution, with the version specifier that
pyproject.toml gives it, and lists nothing the code does not use.

Import names map to distributions through ``importlib.metadata``
(``cv2`` -> opencv-python, ``yaml`` -> PyYAML, ``sklearn`` -> scikit-learn), so
the packages must be installed in the environment that runs the tests, which
``pip install -e '.[test]'`` does.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
RULE_FILES = sorted((ROOT / "workflow" / "rules").glob("*.smk"))
ENV_FILES = sorted((ROOT / "envs").glob("*.yaml"))

# Packages that code needs without importing them by name: pandas loads tabulate
# for DataFrame.to_markdown and Jinja2 for DataFrame.to_latex, and papermill runs
# notebooks in the "python3" kernel that ipykernel provides.
IMPLICIT_REQUIREMENTS = {
    r"\.to_markdown\(": "tabulate",
    r"\.to_latex\(": "jinja2",
    r"^\s*(import|from) papermill\b": "ipykernel",
}
# Conda packages outside pip: the interpreter and pip itself. Everything else is
# installed with pip, so that pyproject.toml's specifiers apply unchanged.
CONDA_PACKAGES = {"python", "pip"}


@dataclass
class Rule:
    name: str
    conda: Path | None = None
    scripts: list[Path] = field(default_factory=list)
    notebooks: list[Path] = field(default_factory=list)


def directive_value(block: str, directive: str) -> str | None:
    """Return the quoted string on the line after ``directive:`` in a rule block, if any."""
    match = re.search(rf"^\s+{directive}:\s*\n\s+\"([^\"]+)\"", block, re.MULTILINE)
    return match[1] if match else None


def parse_rules(path: Path) -> dict[str, Rule]:
    """Parse the rules of one .smk file: conda environment, script and notebooks, relative paths resolved.

    ``use rule A as B with:`` inherits A's script and environment unless it overrides them.
    """
    text = path.read_text()
    rules: dict[str, Rule] = {}
    headers = list(re.finditer(r"^(?:rule (\w+)|use rule (\w+) as (\w+)(?: with)?):", text, re.MULTILINE))
    for index, header in enumerate(headers):
        end = headers[index + 1].start() if index + 1 < len(headers) else len(text)
        block = text[header.end() : end]
        if header[1]:
            rule = Rule(header[1])
        else:
            base = rules[header[2]]
            rule = Rule(header[3], base.conda, list(base.scripts), list(base.notebooks))
        if conda := directive_value(block, "conda"):
            rule.conda = (path.parent / conda).resolve()
        if script := directive_value(block, "script"):
            rule.scripts = [(path.parent / script).resolve()]
        if notebook := directive_value(block, "notebook"):
            rule.notebooks = [(path.parent / notebook).resolve()]
        # Notebooks that a script runs with papermill are inputs, relative to the workflow root.
        for notebook in re.findall(r"\"(workflow/notebooks/[^\"]+\.ipynb)\"", block):
            rule.notebooks.append(ROOT / notebook)
        rules[rule.name] = rule
    return rules


def all_rules() -> list[Rule]:
    rules: dict[str, Rule] = {}
    for path in RULE_FILES:
        rules.update(parse_rules(path))
    return list(rules.values())


def notebook_source(path: Path) -> str:
    """Return a notebook's code cells as one Python source, IPython magics and shell lines dropped."""
    cells = json.loads(path.read_text())["cells"]
    lines = []
    for cell in cells:
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        lines.extend(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))
    return "\n".join(lines)


def imported_modules(source: str, package: str = "") -> set[str]:
    """Return the absolute module names that ``source`` imports, at any depth in the code.

    ``from package import name`` yields ``package`` and ``package.name``, because
    the name may be a submodule. Callers keep only the names that are modules.
    Relative imports resolve against ``package``, the package of the importing module.
    """
    modules = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            modules.add(base)
            modules.update(f"{base}.{alias.name}" for alias in node.names)
    return modules


def facemtl_module_file(module: str) -> Path | None:
    """Return the source file of a facemtl module, or None for a name that is no module."""
    base = ROOT / "src" / Path(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def module_package(path: Path) -> str:
    """Return the package that a facemtl source file belongs to, e.g. facemtl.models for models/blocks.py."""
    return ".".join(path.parent.relative_to(ROOT / "src").parts)


def collect_sources(rule: Rule) -> dict[Path, str]:
    """Return the source of a rule's scripts and notebooks and of every facemtl module they import."""
    sources = {path: path.read_text() for path in rule.scripts}
    sources.update({path: notebook_source(path) for path in rule.notebooks})
    pending = list(sources)
    while pending:
        path = pending.pop()
        package = module_package(path) if path.is_relative_to(ROOT / "src") else ""
        for module in imported_modules(sources[path], package):
            if module.split(".")[0] != "facemtl":
                continue
            # Importing facemtl.a.b runs facemtl/__init__.py and facemtl/a/__init__.py first.
            parts = module.split(".")
            for depth in range(1, len(parts) + 1):
                module_file = facemtl_module_file(".".join(parts[:depth]))
                if module_file is not None and module_file not in sources:
                    sources[module_file] = module_file.read_text()
                    pending.append(module_file)
    return sources


def required_distributions(rule: Rule) -> dict[tuple[str, ...], set[str]]:
    """Map the distributions that a rule's code needs to the files that need them.

    Each key lists the canonical names of the distributions that provide one
    import, and any one of them satisfies it: cv2 comes from opencv-python or its
    headless build, whichever is installed.
    """
    import_to_distributions = importlib.metadata.packages_distributions()
    required: dict[tuple[str, ...], set[str]] = {}
    for path, source in collect_sources(rule).items():
        needed = []
        package = module_package(path) if path.is_relative_to(ROOT / "src") else ""
        for module in imported_modules(source, package):
            top = module.split(".")[0]
            if top in sys.stdlib_module_names or top in ("__future__", "facemtl"):
                continue
            distributions = import_to_distributions.get(top)
            if not distributions:
                pytest.fail(
                    f"{path.relative_to(ROOT)} imports {top!r}, which no installed distribution provides; "
                    "install the project with pip install -e '.[test]' so the import can be mapped"
                )
            needed.append(distributions)
        for pattern, distribution in IMPLICIT_REQUIREMENTS.items():
            if re.search(pattern, source, re.MULTILINE):
                needed.append([distribution])
        for distributions in needed:
            key = tuple(sorted({canonicalize_name(name) for name in distributions}))
            required.setdefault(key, set()).add(str(path.relative_to(ROOT)))
    return required


def read_env(path: Path) -> tuple[list[str], dict[str, Requirement]]:
    """Return an environment file's conda packages and its pip requirements by canonical name."""
    spec = yaml.safe_load(path.read_text())
    conda, pip = [], {}
    for entry in spec.get("dependencies", []):
        if isinstance(entry, dict):
            for line in entry.get("pip", []):
                requirement = Requirement(line)
                pip[canonicalize_name(requirement.name)] = requirement
        else:
            conda.append(str(entry))
    return conda, pip


def pyproject_requirements() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        lines.extend(extra)
    return {canonicalize_name(Requirement(line).name): Requirement(line) for line in lines}


def env_rules() -> dict[Path, list[Rule]]:
    """Group the rules by the environment file their conda: directive names."""
    grouped: dict[Path, list[Rule]] = {}
    for rule in all_rules():
        if rule.conda is not None:
            grouped.setdefault(rule.conda, []).append(rule)
    return grouped


def env_requirements(env: Path) -> dict[tuple[str, ...], set[str]]:
    """Map the distributions that any rule of ``env`` needs to the files that need them."""
    required: dict[tuple[str, ...], set[str]] = {}
    for rule in env_rules()[env]:
        for distributions, files in required_distributions(rule).items():
            required.setdefault(distributions, set()).update(files)
    return required


def env_id(path: Path) -> str:
    return path.name


def test_every_rule_has_existing_env():
    rules = all_rules()

    assert len(rules) >= 10, [rule.name for rule in rules]
    for rule in rules:
        if rule.name == "all":
            continue
        assert rule.conda is not None, f"rule {rule.name} has no conda: directive"
        assert rule.conda.is_file(), f"rule {rule.name}: conda environment {rule.conda} not found"
        for path in rule.scripts + rule.notebooks:
            assert path.is_file(), f"rule {rule.name}: {path} not found"


def test_every_env_used_by_a_rule():
    used = set(env_rules())

    for path in ENV_FILES:
        assert path.resolve() in used, f"{path.relative_to(ROOT)} is not the conda: environment of any rule"


def test_import_scan_follows_facemtl_modules():
    """The scan reaches facemtl.models.blocks from train.py, and cv2 from detection.py through dyadic_faces.py."""
    rules = {rule.name: rule for rule in all_rules()}

    train_sources = collect_sources(rules["train"])
    faces_required = required_distributions(rules["dyadic_faces"])

    faces_files = {name: files for names, files in faces_required.items() for name in names}
    assert ROOT / "src" / "facemtl" / "models" / "blocks.py" in train_sources
    assert ROOT / "src" / "facemtl" / "__init__.py" in train_sources
    assert "src/facemtl/detection.py" in faces_files["opencv-python"]
    assert "face-alignment" in faces_files
    assert "imageio-ffmpeg" in faces_files


@pytest.mark.parametrize("env", ENV_FILES, ids=env_id)
def test_env_lists_every_import(env):
    _, pip = read_env(env)
    required = env_requirements(env.resolve())

    missing = {
        " or ".join(names): sorted(files) for names, files in required.items() if not set(names) & set(pip)
    }
    assert not missing, f"{env.relative_to(ROOT)} lacks packages that its rules' code needs: {missing}"


@pytest.mark.parametrize("env", ENV_FILES, ids=env_id)
def test_env_has_no_unused_packages(env):
    _, pip = read_env(env)
    required = env_requirements(env.resolve())

    unused = sorted(set(pip) - {name for names in required for name in names})
    assert not unused, f"{env.relative_to(ROOT)} lists packages that none of its rules' code imports: {unused}"


@pytest.mark.parametrize("env", ENV_FILES, ids=env_id)
def test_env_versions_match_pyproject(env):
    _, pip = read_env(env)
    declared = pyproject_requirements()

    for name, requirement in pip.items():
        assert str(requirement.specifier), f"{env.relative_to(ROOT)}: {requirement} has no version specifier"
        if name in declared:
            assert requirement.specifier == declared[name].specifier, (
                f"{env.relative_to(ROOT)}: {requirement} differs from pyproject.toml's {declared[name]}"
            )


@pytest.mark.parametrize("env", ENV_FILES, ids=env_id)
def test_env_conda_packages_only_python_and_pip(env):
    conda, _ = read_env(env)
    requires_python = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]

    names = {re.split(r"[=<>!~ ]", entry)[0] for entry in conda}
    assert names == CONDA_PACKAGES, f"{env.relative_to(ROOT)}: conda packages {sorted(names)}, expected python and pip"
    python = next(entry for entry in conda if entry.startswith("python"))
    version = python.removeprefix("python").lstrip("=")
    assert version, f"{env.relative_to(ROOT)}: python has no version"
    assert Requirement(f"python{requires_python}").specifier.contains(Version(version)), (
        f"{env.relative_to(ROOT)}: python {version} does not satisfy pyproject.toml's requires-python {requires_python}"
    )
