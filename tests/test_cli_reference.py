"""docs/cli.md is generated from the click commands and must be current."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parent.parent


def generator():
    spec = importlib.util.spec_from_file_location("gen_cli_reference", ROOT / "docs" / "gen_cli_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_cli_md_is_current():
    expected = generator().render()
    current = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert current == expected, "docs/cli.md is stale: run `python docs/gen_cli_reference.py --write`"


def test_every_command_has_a_section():
    from tradeguard.cli import cli

    gen = generator()
    text = gen.render()
    paths = [" ".join(path) for path, _, _ in gen.walk(cli, ["tradeguard"])]
    assert len(paths) > 40
    for path in paths:
        assert f"\n## {path}\n" in text, path
    for path in ("tradeguard report", "tradeguard export", "tradeguard replay", "tradeguard order explain"):
        assert path in paths


def test_commands_added_at_run_time_by_plugins_are_left_out():
    from tradeguard.cli import cli

    @cli.command("zz-plugin-command")
    def added():
        """Added by a plugin."""

    try:
        assert "zz-plugin-command" not in generator().render()
    finally:
        del cli.commands["zz-plugin-command"]


def test_the_generator_renders_usage_help_and_options():
    @click.group()
    def root():
        """Root."""

    @root.command()
    @click.argument("who")
    @click.option("--times", type=int, default=2, show_default=True, help="How often.")
    @click.option("--loud/--quiet", help="Volume.")
    @click.option("--colour", type=click.Choice(["red", "blue"]), help="A | colour.")
    def hello(who, times, loud, colour):
        """Say hello to WHO.

        \b
        tradeguard hello world
        """

    gen = generator()
    hello.callback.__module__ = "tradeguard.example"  # as if tradeguard defined it
    text = gen.render(root)
    assert "## tradeguard hello\n" in text
    assert "Usage: tradeguard hello [OPTIONS] WHO" in text
    assert "Say hello to WHO." in text and "```text\ntradeguard hello world\n```" in text
    assert "| `--times INTEGER` | How often. (default: 2) |" in text
    assert "| `--loud, --quiet` | Volume. |" in text
    assert "| `--colour [red\\|blue]` | A \\| colour. |" in text
