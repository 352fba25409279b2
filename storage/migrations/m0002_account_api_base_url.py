"""0002: accounts may override the venue's API base URL (regional endpoint, proxy, local mock)."""

from __future__ import annotations

import peewee as pw

NAME = "account api_base_url"


def upgrade(migrator, db):
    migrator.migrate(migrator.add_column("account", "api_base_url", pw.CharField(max_length=300, null=True)))


def downgrade(migrator, db):
    migrator.migrate(migrator.drop_column("account", "api_base_url"))
