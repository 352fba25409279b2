"""A real installation: wheels of tradeguard and of the example third-party
plugin (examples/plugin-trading-hours), pip-installed into one fresh venv
(dependencies from the package index), then driven through the installed
``tradeguard`` script in subprocesses with a fresh TRADEGUARD_HOME.

This checks what an editable install hides: the package-dir mapping and the
package list in pyproject.toml, the console script, and entry-point discovery
of a separately installed plugin.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "plugin-trading-hours"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
EXAMPLE_PYPROJECT = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())


def run(args: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None,
        timeout: int = 600, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, input=input)


def checked(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"{result.args} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def build_wheel(source: Path, scratch: Path, out: Path) -> Path:
    """Build a wheel from a clean copy of *source* (the work tree stays untouched)."""
    copy = scratch / source.name
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns(
        ".git", ".venv", "__pycache__", "*.egg-info", "build", "dist", "tests", "bench", "*.db*"))
    before = set(out.glob("*.whl"))
    checked(run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(out), str(copy)]))
    (wheel,) = set(out.glob("*.whl")) - before
    return wheel


@dataclass
class Installation:
    venv: Path
    wheels: list[Path]

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    def env(self, home: Path, **extra: str) -> dict[str, str]:
        """A clean environment: no TRADEGUARD_* from the caller, the venv first on PATH."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEGUARD_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env.update({"PATH": f"{self.bin}{os.pathsep}{env.get('PATH', '')}", "TRADEGUARD_HOME": str(home),
                    "VIRTUAL_ENV": str(self.venv)})
        env.update(extra)
        return env


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installation:
    """ONE venv with both wheels installed, shared by every test here."""
    base = tmp_path_factory.mktemp("install")
    dist = base / "dist"
    dist.mkdir()
    wheels = [build_wheel(ROOT, base, dist), build_wheel(EXAMPLE, base, dist)]
    venv = base / "venv"
    checked(run([sys.executable, "-m", "venv", str(venv)]))
    checked(run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", *map(str, wheels)],
                env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}))
    return Installation(venv, wheels)


@pytest.fixture
def fresh_home(tmp_path: Path) -> Path:
    home = tmp_path / "tghome"
    home.mkdir(mode=0o700)
    return home


def tradeguard(installed: Installation, home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run([str(installed.bin / "tradeguard"), *args], env=installed.env(home, **env), cwd=home, timeout=300)


# -- the package ------------------------------------------------------------------------------


def test_version(installed: Installation, fresh_home: Path) -> None:
    result = checked(tradeguard(installed, fresh_home, "--version"))
    assert PYPROJECT["project"]["version"] in result.stdout


def test_every_package_imports_from_the_wheel(installed: Installation, fresh_home: Path) -> None:
    packages = PYPROJECT["tool"]["setuptools"]["packages"]
    code = "import importlib, sys\n" + "".join(f"importlib.import_module({p!r})\n" for p in packages) + \
        "import tradeguard\nprint(tradeguard.__file__)"
    result = checked(run([str(installed.bin / "python"), "-c", code], env=installed.env(fresh_home), cwd=fresh_home))
    location = Path(result.stdout.strip())
    assert installed.venv in location.parents, f"imported {location}, not the installed wheel"
    # Nothing generic lands in site-packages: only the tradeguard namespace.
    site = location.parent.parent
    assert not any((site / name).exists() for name in ("core", "storage", "plugins"))


def test_init_and_migrate(installed: Installation, fresh_home: Path) -> None:
    checked(tradeguard(installed, fresh_home, "init"))
    database = fresh_home / "tradeguard.db"
    assert database.exists() and (database.stat().st_mode & 0o777) == 0o600
    checked(tradeguard(installed, fresh_home, "db", "migrate"))
    status = checked(tradeguard(installed, fresh_home, "db", "status", "--json"))
    assert json.loads(status.stdout)


def test_demo_runs_from_the_installed_wheel(installed: Installation, fresh_home: Path) -> None:
    result = checked(tradeguard(installed, fresh_home, "demo", "--ticks", "5", "--json"))
    data = json.loads(result.stdout)
    assert data["ticks"] == 5 and data["audit"].startswith("ok: ")


# -- the example third-party plugin --------------------------------------------------------------


def test_plugins_lists_the_installed_example(installed: Installation, fresh_home: Path) -> None:
    data = json.loads(checked(tradeguard(installed, fresh_home, "plugins", "--json")).stdout)
    by_name = {p["name"]: p for p in data["plugins"]}
    plugin = by_name["trading_hours"]
    assert plugin["source"] == "entrypoint"
    assert plugin["distribution"] == EXAMPLE_PYPROJECT["project"]["name"]
    assert plugin["version"] == EXAMPLE_PYPROJECT["project"]["version"]
    assert plugin["registered"]["risk_rules"] == ["trading_hours"]
    assert data["errors"] == []
    text = checked(tradeguard(installed, fresh_home, "plugins")).stdout
    assert "trading_hours" in text and "tradeguard-trading-hours 0.1.0" in text


def test_plugin_switches_through_the_installed_cli(installed: Installation, fresh_home: Path) -> None:
    off = json.loads(checked(tradeguard(installed, fresh_home, "--no-plugins", "plugins", "--json")).stdout)
    assert "trading_hours" not in {p["name"] for p in off["plugins"]}
    off = json.loads(checked(tradeguard(installed, fresh_home, "plugins", "--json",
                                        TRADEGUARD_DISABLE_PLUGINS="1")).stdout)
    assert "trading_hours" not in {p["name"] for p in off["plugins"]}
    only = json.loads(checked(tradeguard(installed, fresh_home, "plugins", "--json",
                                         TRADEGUARD_PLUGINS="something_else")).stdout)
    assert "trading_hours" not in {p["name"] for p in only["plugins"]}
    assert only["errors"][0]["plugin"] == "something_else"


_help: dict[tuple[str, ...], bool] = {}


def has_command(installed: Installation, home: Path, *words: str) -> bool:
    """Whether the installed CLI has ``tradeguard WORDS…`` (asked once per session)."""
    if words not in _help:
        _help[words] = tradeguard(installed, home, *words, "--help").returncode == 0
    return _help[words]


def test_risk_rules_shows_the_example_rule(installed: Installation, fresh_home: Path) -> None:
    if not has_command(installed, fresh_home, "risk", "rules"):
        pytest.skip("`tradeguard risk rules` does not exist yet")
    checked(tradeguard(installed, fresh_home, "init"))
    result = checked(tradeguard(installed, fresh_home, "risk", "rules"))
    assert "trading_hours" in result.stdout


def closed_window(now: datetime) -> dict[str, str]:
    """Trading hours that exclude *now* (and the next 10 minutes) on every day."""
    start = (now + timedelta(hours=2)).strftime("%H:00")
    end = (now + timedelta(hours=3)).strftime("%H:00")
    return {"start": start, "end": end, "days": "mon-sun"}


def test_example_rule_blocks_an_order_through_the_cli(installed: Installation, fresh_home: Path) -> None:
    """The full story: install, enable the third-party rule, an order outside hours is refused (exit 3)."""
    for words in (("order", "place"), ("risk", "enable"), ("risk", "set")):
        if not has_command(installed, fresh_home, *words):
            pytest.skip(f"`tradeguard {' '.join(words)}` does not exist yet")
    checked(tradeguard(installed, fresh_home, "init"))
    checked(tradeguard(installed, fresh_home, "account", "add", "bot", "--exchange", "paper", "--initial-capital", "10000"))
    checked(tradeguard(installed, fresh_home, "risk", "enable", "bot", "trading_hours"))
    bad = tradeguard(installed, fresh_home, "risk", "set", "bot", "trading_hours", "start=25:00")
    assert bad.returncode == 2 and "trading_hours.start" in bad.stderr, (bad.stdout, bad.stderr)
    window = closed_window(datetime.now(timezone.utc))
    checked(tradeguard(installed, fresh_home, "risk", "set", "bot", "trading_hours",
                       *(f"{k}={v}" for k, v in window.items())))
    result = tradeguard(installed, fresh_home, "order", "place", "bot", "BTC/USDT", "buy", "0.01", "--json")
    assert result.returncode == 3, (result.stdout, result.stderr)
    document = json.loads(result.stdout)
    assert document["status"] in ("rejected", "REJECTED")
    assert "outside trading hours" in json.dumps(document)
    # The same order inside the window goes through.
    checked(tradeguard(installed, fresh_home, "risk", "set", "bot", "trading_hours", "start=00:00", "end=24:00"))
    checked(tradeguard(installed, fresh_home, "order", "place", "bot", "BTC/USDT", "buy", "0.01"))
