"""Every package directory is listed in pyproject.toml (or it is missing from the wheel)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def setuptools_config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def packages_in_tree() -> set[str]:
    """Import names of every directory with an __init__.py under the mapped folders."""
    found = set()
    for package, folder in setuptools_config()["package-dir"].items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            if "__pycache__" in init.parts:
                continue
            relative = init.parent.relative_to(base).parts
            found.add(".".join((package, *relative)))
    return found


def test_every_package_directory_is_listed_in_pyproject() -> None:
    listed = set(setuptools_config()["packages"])
    missing = sorted(packages_in_tree() - listed)
    assert missing == [], f"add these to [tool.setuptools] packages in pyproject.toml: {missing}"


def test_every_listed_package_exists() -> None:
    stale = sorted(set(setuptools_config()["packages"]) - packages_in_tree())
    assert stale == [], f"pyproject.toml lists packages that do not exist: {stale}"


def test_package_dir_maps_the_three_top_level_folders() -> None:
    assert setuptools_config()["package-dir"] == {
        "tradeguard": "core", "tradeguard.storage": "storage", "tradeguard.plugins": "plugins"}
