"""Numbered schema migrations and their runner.

Each module ``mNNNN_slug.py`` defines ``NAME``, ``upgrade(migrator, db)`` and
``downgrade(migrator, db)`` (``migrator`` is a `playhouse.migrate`
SchemaMigrator). Applied versions are recorded in ``schema_version``; each
migration runs in its own transaction where the backend allows DDL in one
(SQLite and PostgreSQL do; MySQL commits DDL implicitly).
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from dataclasses import dataclass
from types import ModuleType

import peewee
from playhouse.migrate import SchemaMigrator

from tradeguard.errors import ValidationError
from tradeguard.storage.models import SchemaVersion

_PATTERN = re.compile(r"^m(\d{4})_\w+$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    module: ModuleType


def available() -> list[Migration]:
    """Every migration shipped with this tradeguard, in order."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        match = _PATTERN.match(info.name)
        if match:
            module = importlib.import_module(f"{__name__}.{info.name}")
            found.append(Migration(int(match.group(1)), module.NAME, module))
    found.sort(key=lambda m: m.version)
    return found


def head() -> int:
    """The newest schema version this tradeguard knows."""
    return available()[-1].version


def current(db: peewee.Database) -> int:
    """The database's schema version (0 for an empty database)."""
    if not db.table_exists(SchemaVersion._meta.table_name):
        return 0
    row = SchemaVersion.select(peewee.fn.MAX(SchemaVersion.version)).scalar()
    return int(row or 0)


def applied(db: peewee.Database) -> list[SchemaVersion]:
    """Applied migrations, oldest first."""
    if not db.table_exists(SchemaVersion._meta.table_name):
        return []
    return list(SchemaVersion.select().order_by(SchemaVersion.version))


def upgrade(db: peewee.Database, target: int | None = None) -> list[Migration]:
    """Apply pending migrations up to *target* (default: head). Returns those applied."""
    target = head() if target is None else target
    if target > head() or target < 0:
        raise ValidationError(f"no schema version {target} (head is {head()})")
    SchemaVersion.create_table(safe=True)
    done = []
    migrator = SchemaMigrator.from_database(db)
    for migration in available():
        if migration.version <= current(db) or migration.version > target:
            continue
        with db.atomic():
            migration.module.upgrade(migrator, db)
            SchemaVersion.create(version=migration.version, name=migration.name)
        done.append(migration)
    return done


def downgrade(db: peewee.Database, target: int) -> list[Migration]:
    """Revert applied migrations newer than *target*. Returns those reverted."""
    if target < 0 or target > head():
        raise ValidationError(f"no schema version {target} (head is {head()})")
    done = []
    migrator = SchemaMigrator.from_database(db)
    for migration in reversed(available()):
        if migration.version > current(db) or migration.version <= target:
            continue
        with db.atomic():
            migration.module.downgrade(migrator, db)
            SchemaVersion.delete().where(SchemaVersion.version == migration.version).execute()
        done.append(migration)
    return done
