"""Hidden prompts on a real terminal (a pseudo-terminal): the passphrase and
secrets are asked for, never echoed, and work."""

from __future__ import annotations

import os
import pty
import select
import sys
import time
from pathlib import Path

import pytest

from vault_helpers import open_engine

PASSPHRASE = "terminal passphrase 42"
SECRET = "TERMINAL-SECRET-0123456789"


def run_in_terminal(args: list[str], env: dict[str, str], answers: list[str], timeout: float = 60) -> tuple[int, str]:
    """Run ``tradeguard ARGS`` on a pseudo-terminal, answering each prompt in turn."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the pty is its controlling terminal
        os.execve(sys.executable, [sys.executable, "-m", "tradeguard.cli", *args], env)
    output = b""
    sent = 0
    answered_at = -1
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                output += data
            if output.endswith(b": ") and len(output) != answered_at and sent < len(answers):
                os.write(fd, answers[sent].encode() + b"\n")
                sent += 1
                answered_at = len(output)
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    return os.waitstatus_to_exitcode(status), output.decode(errors="replace")


@pytest.fixture
def terminal_env(tmp_path: Path, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEGUARD_")}
    env.update({"TRADEGUARD_HOME": str(home), "TRADEGUARD_DATABASE_URL": f"sqlite:///{tmp_path / 'tg.db'}",
                "TRADEGUARD_DISABLE_PLUGINS": "1"})
    return env


def test_prompts_create_the_vault_store_a_secret_and_never_echo(terminal_env, tmp_path, home):
    with open_engine(terminal_env["TRADEGUARD_DATABASE_URL"], home, master_key=None) as eng:
        eng.accounts.add("main", "paper")
    code, out = run_in_terminal(["creds", "set", "main", "api_key"], terminal_env, [PASSPHRASE, PASSPHRASE, SECRET])
    assert code == 0, out
    assert "New master passphrase" in out and "api_key for main" in out and "stored api_key" in out
    assert PASSPHRASE not in out and SECRET not in out
    code, out = run_in_terminal(["creds", "check", "main"], terminal_env, [PASSPHRASE])
    assert code == 0, out
    assert "Master passphrase" in out and "TERM…6789" in out and SECRET not in out
    code, out = run_in_terminal(["creds", "check", "main"], terminal_env, ["not the passphrase"])
    assert code == 2 and "wrong master key" in out
    with open_engine(terminal_env["TRADEGUARD_DATABASE_URL"], home, master_key=PASSPHRASE) as eng:
        assert eng.vault.secrets_for("main", purpose="test")["api_key"] == SECRET
