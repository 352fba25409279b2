"""Helpers for plugin tests: installed-looking distributions on sys.path and
the register-then-remove fixture pattern docs/plugins.md recommends."""

from __future__ import annotations

import contextlib
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest


class FakeDistributions:
    """Writes distributions (a module + ``*.dist-info`` with an entry point) that
    `importlib.metadata` finds exactly as it finds pip-installed ones."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch):
        self.root = root
        self.modules: list[str] = []
        root.mkdir(parents=True, exist_ok=True)
        monkeypatch.syspath_prepend(str(root))

    def add(self, dist: str, version: str, entry_point: str, source: str) -> str:
        """Install distribution *dist* whose entry point *entry_point* names a new module with *source*."""
        module = f"tg_test_{entry_point}_{uuid.uuid4().hex[:8]}"
        (self.root / f"{module}.py").write_text(textwrap.dedent(source))
        info = self.root / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(f"[tradeguard]\n{entry_point} = {module}\n")
        self.modules.append(module)
        return module

    def cleanup(self) -> None:
        for module in self.modules:
            sys.modules.pop(module, None)


@pytest.fixture
def dists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDistributions]:
    """Fake installed distributions for this test only."""
    fake = FakeDistributions(tmp_path / "site", monkeypatch)
    try:
        yield fake
    finally:
        fake.cleanup()


GOOD_PLUGIN = """
    from tradeguard import hookimpl, SettingSpec, Decision

    class Venue:
        name = "goodx"
        testnet = True
        capabilities = frozenset()
        def __init__(self, config):
            self.config = config
        def close(self):
            pass

    class Rule:
        name = "goodrule"
        description = "always allows"
        settings = (SettingSpec("limit", int, default=3),)
        enabled_by_default = False
        def check(self, request, context, settings):
            return Decision.allow()

    @hookimpl
    def register_exchanges(register):
        register("goodx", Venue, settings=[SettingSpec("api_key", secret=True)])

    @hookimpl
    def register_risk_rules(register):
        register("goodrule", Rule())
"""

BROKEN_IMPORT = """
    import tg_no_such_module_anywhere  # noqa: F401
"""

MISSPELT_HOOK = """
    from tradeguard import hookimpl

    @hookimpl
    def register_exchange(register):  # missing "s"
        register("never", object)
"""

RAISING_REGISTRATION = """
    from tradeguard import hookimpl

    @hookimpl
    def register_exchanges(register):
        register("half", lambda config: None)
        raise RuntimeError("cannot reach my licence server")
"""

DUPLICATE_OF_BUILTIN = """
    from tradeguard import hookimpl

    @hookimpl
    def register_exchanges(register):
        register("paper", lambda config: None)
"""


@contextlib.contextmanager
def registered(engine: Any, plugin: Any, name: str) -> Iterator[Any]:
    """Register *plugin* on *engine* for the block, then remove it."""
    engine.plugins.register(plugin, name=name)
    try:
        yield plugin
    finally:
        engine.plugins.unregister(name)
