"""pyproject.toml and environment.yml must name the same packages; the README's commands exist."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"pytorch": "torch"}  # conda-forge's name -> PyPI's name
DESIGN_PACKAGES = {"jupyterlab", "torch", "torchvision", "captum", "matplotlib", "ipywidgets",
                   "pytorch-msssim", "nbval"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower()


def pyproject_packages() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {_name(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        names |= {_name(r) for r in extra}
    return names


def environment_packages() -> set[str]:
    names = set()
    text = (ROOT / "environment.yml").read_text()
    dependencies = text.split("dependencies:", 1)[1]
    for line in dependencies.splitlines():
        match = re.match(r"\s+- +([A-Za-z0-9_.\-]+)", line)
        if match and not line.strip().endswith(":"):
            names.add(CONDA_NAMES.get(match.group(1).lower(), match.group(1).lower()))
    return names - {"python", "pip"}


def test_pyproject_and_environment_name_the_same_packages():
    assert pyproject_packages() == environment_packages()


def test_one_version_pyproject_is_the_source_of_truth():
    import utils

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert utils.__version__ == declared, "reinstall (python3 kit.py test) after a version change"


def test_the_design_packages_are_dependencies():
    assert DESIGN_PACKAGES <= pyproject_packages()


def test_readme_names_the_two_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    assert "python3 kit.py open" in readme and "python3 kit.py test" in readme
    assert "python3 kit.py test" in (ROOT / ".ci" / "run").read_text()
