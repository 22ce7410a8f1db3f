"""Indexes for every filter and ordering of GET /api/v1/sessions (tests/api/test_query_plans.py).

Built CONCURRENTLY on PostgreSQL: a fleet's session table is large and the sync writes to it all
the time, so a plain CREATE INDEX would block the sync for the whole build. SQLite (`make run`'s
embedded database) has no CONCURRENTLY: there the same index is built the plain way."""

import django.db.models.functions.comparison
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class AddIndexConcurrentlyOnPostgres(AddIndexConcurrently):
    """AddIndexConcurrently on PostgreSQL, AddIndex elsewhere."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        return migrations.AddIndex.database_forwards(
            self, app_label, schema_editor, from_state, to_state
        )

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            return super().database_backwards(app_label, schema_editor, from_state, to_state)
        return migrations.AddIndex.database_backwards(
            self, app_label, schema_editor, from_state, to_state
        )


def _recency():
    return models.OrderBy(
        django.db.models.functions.comparison.Coalesce("last_activity_at", "first_seen_at"),
        descending=True,
    )


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("sessions_mgmt", "0003_backup_points_and_proofs"),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name="session",
            index=models.Index(
                models.F("organization"),
                _recency(),
                models.OrderBy(models.F("id"), descending=True),
                name="session_org_recency",
            ),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name="session",
            index=models.Index(
                models.F("instance"),
                _recency(),
                models.OrderBy(models.F("id"), descending=True),
                name="session_inst_recency",
            ),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name="session",
            index=models.Index(
                models.F("organization"),
                models.F("status"),
                _recency(),
                models.OrderBy(models.F("id"), descending=True),
                name="session_org_status_recency",
            ),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name="session",
            index=models.Index(
                models.F("organization"),
                models.F("channel"),
                _recency(),
                models.OrderBy(models.F("id"), descending=True),
                name="session_org_channel_recency",
            ),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name="session",
            index=models.Index(
                fields=["organization", "-cost_usd", "-id"], name="session_org_cost"
            ),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name="session",
            index=models.Index(fields=["organization", "id"], name="session_org_id"),
        ),
    ]
