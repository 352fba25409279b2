"""Every code block marked runnable in docs/ runs, as written, in a fresh TRADEGUARD_HOME.

A block opens with ```` ```bash runnable ```` or ```` ```python runnable ````.
The blocks of one page run in order in one fresh home (a page is one
session: the quick start's orders exist when its report runs); bash blocks
through ``bash -euo pipefail`` with the virtualenv's ``bin`` first on PATH,
python blocks with the virtualenv's python. examples/embedded_bot.py runs too.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
BLOCK = re.compile(r"^```(bash|python) runnable[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
BIN = Path(sys.executable).parent


def runnable_blocks(path: Path) -> list[tuple[str, str]]:
    """(language, code) of each block marked runnable in *path*, in order."""
    return [(m.group(1), m.group(2)) for m in BLOCK.finditer(path.read_text(encoding="utf-8"))]


PAGES = sorted(p for p in DOCS.glob("*.md") if runnable_blocks(p))


def clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEGUARD_")}
    env["TRADEGUARD_HOME"] = str(home)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["COLUMNS"] = "120"
    return env


def run_block(language: str, code: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    command = ["bash", "-euo", "pipefail", "-c", code] if language == "bash" else [sys.executable, "-c", code]
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_the_quick_start_and_the_embedding_guide_have_runnable_blocks():
    names = {p.name for p in PAGES}
    assert {"quickstart.md", "embedding.md"} <= names
    assert any(lang == "python" for lang, _ in runnable_blocks(DOCS / "embedding.md"))


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_runnable_blocks_run(page: Path, tmp_path: Path):
    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    env = clean_env(home)
    for index, (language, code) in enumerate(runnable_blocks(page), 1):
        result = run_block(language, code, env, work)
        assert result.returncode == 0, (
            f"{page.name}: runnable block {index} ({language}) exited {result.returncode}\n--- code\n{code}"
            f"--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-3000:]}")
    if page.name == "quickstart.md":
        assert (work / "equity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_block_marker_is_recognised(tmp_path: Path):
    page = tmp_path / "page.md"
    page.write_text("```bash\nnot run\n```\n\n```bash runnable\necho one\n```\n\n"
                    "```python runnable\nprint('two')\n```\n\n```python\nnot run\n```\n")
    assert runnable_blocks(page) == [("bash", "echo one\n"), ("python", "print('two')\n")]
    assert run_block("bash", "false\necho after", clean_env(tmp_path / "h"), tmp_path).returncode != 0


@pytest.mark.slow
def test_the_embedded_bot_example_runs(tmp_path: Path):
    env = clean_env(tmp_path / "home")
    for attempt in range(2):  # the second run reuses the account the first one created
        result = subprocess.run([sys.executable, str(ROOT / "examples" / "embedded_bot.py"), "--ticks", "30"],
                                env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "replay: ok" in result.stdout
        placed = int(re.search(r"orders placed: (\d+)", result.stdout).group(1))
        assert placed > 0
