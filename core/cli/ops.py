"""Operations commands: ``db copy``, ``db prune``, ``db grants``, ``doctor`` and
``audit archive`` / ``audit check-archive`` (docs/operations.md)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

import click
from click.core import ParameterSource

from tradeguard.cli.output import CliState, emit_json, fail, json_option, pass_state, table
from tradeguard.errors import EXIT_BAD_INPUT, EXIT_RUNTIME
from tradeguard.storage import redact_url


@click.command("copy")
@click.option("--to", "target_url", metavar="URL", required=True, envvar="TRADEGUARD_COPY_TO",
              help="Target database URL (or $TRADEGUARD_COPY_TO). Keep passwords out of argv: "
                   "use ~/.pgpass or PGPASSWORD.")
@click.option("--force", is_flag=True, help="Replace a target that already holds tradeguard data (asks first).")
@click.option("--yes", is_flag=True, help="With --force: do not ask for confirmation.")
@json_option
@pass_state
def db_copy(state: CliState, target_url: str, force: bool, yes: bool) -> None:
    """Copy this installation (every table, vault keys, audit log) to another database."""
    from tradeguard.dbcopy import copy_installation, inspect_target, same_database
    from tradeguard.storage import connect

    ctx = click.get_current_context()
    if urlparse(target_url).password and ctx.get_parameter_source("target_url") == ParameterSource.COMMANDLINE:
        click.echo("warning: the target's password is visible in the process list; use ~/.pgpass, PGPASSWORD "
                   "or TRADEGUARD_COPY_TO", err=True)
    engine = _open_without_key(state, check_schema=True)  # no master key: the copy only reads rows
    if same_database(engine.url, target_url):
        fail("the target is the source database: copy to another database", EXIT_BAD_INPUT)
    target = connect(target_url)
    try:
        before = inspect_target(target, target_url)
    finally:
        target.close()
    replace = False
    if not before.empty and force and not before.foreign_tables:
        rows = sum(before.rows.values())
        if not yes and not click.confirm(
            f"Replace the {rows} rows of tradeguard data in {before.url} with a copy of {redact_url(engine.url)}?",
            default=False, err=True,
        ):
            fail("not confirmed; nothing changed", EXIT_BAD_INPUT)
        replace = True

    def progress(table_name: str, rows: int) -> None:
        if not state.json:
            click.echo(f"  {table_name}: {rows} rows", err=True)

    result = copy_installation(engine.db, engine.url, target_url, replace=replace, progress=progress)
    if state.json:
        emit_json(result.as_dict())
        return
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    head = result.audit_head
    click.echo(
        f"copied {sum(result.tables.values())} rows in {len(result.tables)} tables from {result.source} to "
        f"{result.target} in {result.seconds:.1f}s"
        + (f"; audit head {head['seq']} {head['hash']}" if head else "")
    )


@click.command("prune")
@click.option("--older-than", metavar="AGE", default=None,
              help="Delete log rows older than AGE (e.g. 90d) in every prunable table; "
                   "default: each table's retention setting.")
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@json_option
@pass_state
def db_prune(state: CliState, older_than: str | None, dry_run: bool) -> None:
    """Delete old sync logs and balance/position snapshots (never orders, trades or the audit log)."""
    from tradeguard.retention import prune

    engine = state.engine()
    result = prune(engine, older_than=older_than, dry_run=dry_run)
    if state.json:
        emit_json(result.as_dict())
        return
    rows = [{"table": item.table, "retention": item.retention, "older_than": item.cutoff.isoformat(),
             ("would_delete" if dry_run else "deleted"): item.rows} for item in result.items]
    table(rows, ["table", "retention", "older_than", "would_delete" if dry_run else "deleted"])
    verb = "would delete" if dry_run else "deleted"
    click.echo(f"{verb} {result.total} rows; never pruned: {', '.join(result.never_pruned)}")


@click.command("grants")
@click.option("--role", required=True, metavar="NAME", help="The PostgreSQL role tradeguard runs as.")
@click.option("--database", "database", metavar="NAME", default=None,
              help="Database name (default: the configured PostgreSQL database).")
@click.option("--schema", default="public", show_default=True, help="Schema holding tradeguard's tables.")
@pass_state
def db_grants(state: CliState, role: str, database: str | None, schema: str) -> None:
    """Print the GRANTs a least-privilege PostgreSQL role needs (run them as the owner)."""
    from tradeguard.pgadmin import grant_statements

    if database is None:
        database = _configured_pg_database(state)
    for statement in grant_statements(role, database=database, schema=schema):
        click.echo(statement)


def _configured_pg_database(state: CliState) -> str:
    from urllib.parse import unquote, urlparse

    url = state.settings.database_url or ""
    parsed = urlparse(url)
    if parsed.scheme.split("+")[0] in ("postgres", "postgresql") and parsed.path.strip("/"):
        return unquote(parsed.path.strip("/"))
    fail("no PostgreSQL database configured: pass --database NAME (or --db URL)", EXIT_BAD_INPUT)
    raise AssertionError  # unreachable


@click.command("doctor")
@click.option("--max-sync-age", metavar="AGE", default=None, help="Warn about accounts not synced for AGE (default: doctor_max_sync_age).")
@click.option("--max-backup-age", metavar="AGE", default=None, help="Warn when the last backup is older (default: doctor_max_backup_age).")
@click.option("--full-audit", is_flag=True, help="Verify the whole audit chain, not only what follows the last checkpoint.")
@json_option
@pass_state
def doctor(state: CliState, max_sync_age: str | None, max_backup_age: str | None, full_audit: bool) -> None:
    """Check the installation: one line per check with ok/warn/fail and the fix. Exit 1 on any fail."""
    from tradeguard.doctor import run_checks
    from tradeguard.vault.keys import master_key_from_settings

    report = run_checks(state.settings, lambda: _open_without_key(state, check_schema=False),
                        master_key=master_key_from_settings(state.settings),
                        max_sync_age=max_sync_age, max_backup_age=max_backup_age, full_audit=full_audit)
    if state.json:
        emit_json(report.as_dict())
    else:
        width = max(len(c.name) for c in report.checks)
        for check in report.checks:
            line = f"{check.status.upper():<4}  {check.name:<{width}}  {check.message}"
            if check.fix and check.status != "ok":
                line += f"  -> {check.fix}"
            click.echo(line)
        counts = report.counts()
        click.echo(f"{counts['ok']} ok, {counts['warn']} warnings, {counts['fail']} failures")
    if report.failed:
        click.get_current_context().exit(EXIT_RUNTIME)


@click.command("archive")
@click.option("-o", "--out", "out", metavar="FILE.jsonl", required=True,
              help="Archive file to create (0600; never overwritten); FILE.manifest.json is written beside it.")
@json_option
@pass_state
def audit_archive(state: CliState, out: str) -> None:
    """Seal the head with a checkpoint and archive entries 1…head with a manifest proving what they are."""
    from tradeguard.archive import archive_audit
    from tradeguard.cli._vault import unlocked_engine

    manifest = archive_audit(unlocked_engine(state), out)
    if state.json:
        emit_json(manifest)
    else:
        click.echo(f"archived entries 1-{manifest['last_seq']} to {out} (sha256 {manifest['sha256'][:16]}…), "
                   f"sealed by checkpoint at {manifest['last_seq']} {manifest['head_hash'][:16]}…")


@click.command("check-archive")
@click.argument("path", metavar="FILE.jsonl")
@click.option("--offline", is_flag=True, help="Check the file against its manifest only, not against this database.")
@json_option
@pass_state
def audit_check_archive(state: CliState, path: str, offline: bool) -> None:
    """Verify an archive: every hash and link, its manifest, and that this database still holds that history."""
    from tradeguard.archive import check_archive
    from tradeguard.errors import IntegrityError

    engine = None if offline else state.engine()
    try:
        summary = check_archive(path, engine)
    except IntegrityError as exc:
        fail(str(exc), exc.exit_code)
    if state.json:
        emit_json(summary)
    else:
        checked = ("; seal checked" if summary["seal_checked"] else "; matches this database"
                   if summary["database_checked"] else "")
        click.echo(f"ok: {summary['entries']} entries, head {summary['head_hash']}{checked}")


def _open_without_key(state: CliState, *, check_schema: bool) -> Any:
    """The command's Engine, opened without the master key (closed with the command)."""
    from tradeguard.engine import Engine

    if state._engine is None:
        state._engine = Engine.open(settings=state.settings, check_schema=check_schema, master_key=None)
    return state._engine


def attach(cli: click.Group) -> None:
    from tradeguard.cli.db import db

    db.add_command(db_copy)
    db.add_command(db_prune)
    db.add_command(db_grants)
    cli.add_command(doctor)
    from tradeguard.cli.audit import audit

    for command in (audit_archive, audit_check_archive):
        audit.commands.setdefault(command.name, command)  # the audit module's own commands win
