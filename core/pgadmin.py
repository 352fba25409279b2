"""PostgreSQL in production: the privileges of a least-privilege role (``tradeguard db grants``).

The owner role (which ran ``tradeguard db migrate``) keeps DDL; the role
tradeguard runs as gets only what normal operation needs:

* CONNECT on the database, USAGE on the schema (no CREATE);
* SELECT, INSERT, UPDATE, DELETE on every tradeguard table, except
* the audit trail (``audit_log``, ``audit_checkpoint``): SELECT and INSERT
  only — the database itself then refuses to rewrite or delete history;
* ``schema_version``: SELECT only (migrations run as the owner);
* USAGE and SELECT on the id sequences (``nextval`` for new rows).

Re-run after every ``tradeguard db migrate`` that adds a table.
"""

from __future__ import annotations

import re

import peewee as pw

from tradeguard.errors import ValidationError
from tradeguard.storage.models import ALL_MODELS, AuditCheckpoint, AuditLog, SchemaVersion

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$-]{0,62}$")
APPEND_ONLY = (AuditLog, AuditCheckpoint)
READ_ONLY = (SchemaVersion,)


def quote_ident(name: str, what: str) -> str:
    """A PostgreSQL identifier in double quotes; refuses names that need escaping."""
    if not _IDENT.match(name or ""):
        raise ValidationError(f"{what} {name!r}: use letters, digits, '_', '$' or '-' (at most 63)")
    return f'"{name}"'


def sequences() -> list[str]:
    """(table, sequence) names of the serial id columns, as PostgreSQL names them."""
    out = []
    for model in ALL_MODELS:
        pk = model._meta.primary_key
        if isinstance(pk, pw.AutoField):
            out.append(f"{model._meta.table_name}_{pk.column_name}_seq")
    return out


def grant_statements(role: str, *, database: str, schema: str = "public") -> list[str]:
    """The GRANT statements (one per line, each ending in ``;``) for *role*."""
    r, d, s = quote_ident(role, "role"), quote_ident(database, "database"), quote_ident(schema, "schema")
    lines = [
        f"-- least-privilege role for tradeguard; run as the owner of {d} after every `tradeguard db migrate`",
        f"GRANT CONNECT ON DATABASE {d} TO {r};",
        f"GRANT USAGE ON SCHEMA {s} TO {r};",
    ]
    for model in ALL_MODELS:
        table = f"{s}.{quote_ident(model._meta.table_name, 'table')}"
        if model in READ_ONLY:
            privileges = "SELECT"
        elif model in APPEND_ONLY:
            privileges = "SELECT, INSERT"
        else:
            privileges = "SELECT, INSERT, UPDATE, DELETE"
        lines.append(f"GRANT {privileges} ON TABLE {table} TO {r};")
    for sequence in sequences():
        lines.append(f"GRANT USAGE, SELECT ON SEQUENCE {s}.{quote_ident(sequence, 'sequence')} TO {r};")
    return lines
