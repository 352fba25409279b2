"""``tradeguard audit``: verify, export, tail, head and checkpoint the audit trail."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, TextIO

import click

from tradeguard.cli._vault import ACTOR, unlocked_engine
from tradeguard.cli.output import CliState, emit_json, fail, json_option, pass_state
from tradeguard.errors import EXIT_INTEGRITY


@click.group()
def audit() -> None:
    """The tamper-evident audit trail."""


@audit.command("verify")
@click.option("--from", "from_seq", type=click.IntRange(min=1), default=1, show_default=True,
              help="Verify from this sequence number.")
@click.option("--expect-head", metavar="HASH", help="A head hash recorded earlier: it must still be in the chain.")
@json_option
@pass_state
def audit_verify(state: CliState, from_seq: int, expect_head: str | None) -> None:
    """Walk the chain (and, with the master key, every seal); exit 4 at the first break.

    Prints ``ok: N entries, head HASH`` and how far the sealed part reaches,
    or the first entry where the chain breaks and how.
    """
    engine = state.engine()
    report = engine.audit.verify(from_seq=from_seq, expect_head=expect_head, actor=ACTOR)
    if state.json:
        emit_json(report.to_dict())
    elif report.ok:
        click.echo(report.message)
    if not report.ok:
        fail(f"audit chain broken at entry {report.bad_seq} ({report.problem}): {report.message}", EXIT_INTEGRITY)


def _line(entry: dict[str, Any]) -> str:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@audit.command("export")
@click.option("--format", "fmt", type=click.Choice(["jsonl"]), default="jsonl", show_default=True)
@click.option("--since", metavar="TIME", help="Only entries at or after this ISO time (e.g. 2026-01-02 or 2026-01-02T03:00Z).")
@click.option("--action", metavar="ACTION", help="Only this action (a trailing * matches a prefix: 'order.*').")
@click.option("--from", "from_seq", type=click.IntRange(min=1), default=1, help="Only entries from this sequence number.")
@click.option("-o", "--output", metavar="FILE", help="Write to FILE (created 0600) instead of stdout.")
@pass_state
def audit_export(state: CliState, fmt: str, since: str | None, action: str | None, from_seq: int,
                 output: str | None) -> None:
    """Stream entries as JSON lines with every column as stored, so the export
    can be verified without tradeguard (docs/audit.md)."""
    engine = state.engine()
    from tradeguard.clock import parse_iso
    from tradeguard.errors import ValidationError

    if since is not None:
        try:
            parse_iso(since)
        except ValueError:
            raise ValidationError(f"--since: expected an ISO date or time, got {since!r}") from None
    out: TextIO
    if output:
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        out = os.fdopen(fd, "w", encoding="utf-8")
    else:
        out = sys.stdout
    try:
        for entry in engine.audit.export(since=since, action=action, from_seq=from_seq, actor=ACTOR):
            out.write(_line(entry) + "\n")
    except BrokenPipeError:  # `audit export | head`: the reader has what it wanted
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        return
    finally:
        if output:
            out.close()
        else:
            out.flush()


def _show(entry: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(_line(entry))
    else:
        sealed = "sealed" if entry["seal"] else "chained"
        click.echo(f"{entry['seq']:>6}  {entry['ts']}  {entry['actor']}  {entry['action']}  {entry['subject']}  "
                   f"{entry['payload']}  [{sealed}]")


@audit.command("tail")
@click.option("-n", "count", type=click.IntRange(min=1), default=20, show_default=True, help="How many entries.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new entries as they are appended (Ctrl-C stops).")
@click.option("--interval", type=click.FloatRange(min=0.05), default=1.0, hidden=True)
@click.option("--max-polls", type=int, default=0, hidden=True)  # tests: stop following after N polls
@json_option
@pass_state
def audit_tail(state: CliState, count: int, follow: bool, interval: float, max_polls: int) -> None:
    """The newest entries, oldest first (JSON lines with --json)."""
    engine = state.engine()
    entries = engine.audit.tail(count)
    for entry in entries:
        _show(entry, state.json)
    if not follow:
        return
    last = entries[-1]["seq"] if entries else 0
    polls = 0
    try:
        while not max_polls or polls < max_polls:
            time.sleep(interval)
            polls += 1
            for entry in engine.audit.tail(after_seq=last):
                _show(entry, state.json)
                last = entry["seq"]
    except KeyboardInterrupt:
        pass


@audit.command("head")
@json_option
@pass_state
def audit_head(state: CliState) -> None:
    """The newest entry's sequence number and hash (record it elsewhere; use it with --expect-head)."""
    head = state.engine().audit.head()
    if state.json:
        emit_json({"seq": head.seq, "hash": head.hash})
    else:
        click.echo(f"{head.seq} {head.hash}")


@audit.command("checkpoint")
@click.option("--reason", default="manual", show_default=True, help="Recorded with the checkpoint.")
@json_option
@pass_state
def audit_checkpoint(state: CliState, reason: str) -> None:
    """Seal the current head with the audit key (needs the master key)."""
    engine = unlocked_engine(state)
    cp = engine.audit.checkpoint(reason)
    if state.json:
        emit_json({"seq": cp.seq, "head_hash": cp.head_hash, "key_id": cp.key_id, "reason": cp.reason})
    else:
        click.echo(f"sealed entry {cp.seq} {cp.head_hash} with {cp.key_id}")


def attach(cli: click.Group) -> None:
    cli.add_command(audit)
