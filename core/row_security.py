"""Row-level security, the database's layer under core.scoping, as migrations apply it.

Each user-owned table admits a row only when the session's scope allows it:
- `oracle.scope` is `staff` (the admin) or `system` (workers, operational reads): every row;
- otherwise only rows whose user_id equals `oracle.user_id`; unset or empty, no row (fails
  closed). The same rule guards what is read and what is written (USING and WITH CHECK).

FORCE makes the table owner obey the policies too; only superusers and BYPASSRLS roles skip
them, and the application never connects as either (see `manage.py db_roles`).

Row-level security is a PostgreSQL feature: on SQLite (the demo) these are no-ops. This
module is the one place that asks which database it is on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

POLICY_RULE = """
    current_setting('oracle.scope', true) IN ('staff', 'system')
    OR user_id = NULLIF(current_setting('oracle.user_id', true), '')::bigint
"""


def _has_row_security(schema_editor) -> bool:
    return schema_editor.connection.vendor == "postgresql"


def row_security_enable(schema_editor, tables: Iterable[str]) -> None:
    if not _has_row_security(schema_editor):
        return
    for table in tables:
        schema_editor.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        schema_editor.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        schema_editor.execute(f"DROP POLICY IF EXISTS oracle_scope ON {table}")
        schema_editor.execute(
            f"CREATE POLICY oracle_scope ON {table} USING ({POLICY_RULE}) "
            f"WITH CHECK ({POLICY_RULE})"
        )


def row_security_disable(schema_editor, tables: Iterable[str]) -> None:
    if not _has_row_security(schema_editor):
        return
    for table in tables:
        schema_editor.execute(f"DROP POLICY IF EXISTS oracle_scope ON {table}")
        schema_editor.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        schema_editor.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")


@contextlib.contextmanager
def migration_system_scope(schema_editor) -> Iterator[None]:
    """A data migration on user-owned tables: the forced policies bind the table owner too,
    so it acts in the system scope, and leaves the session as it found it."""
    if not _has_row_security(schema_editor):
        yield
        return
    schema_editor.execute("SELECT set_config('oracle.scope', 'system', false)")
    try:
        yield
    finally:
        schema_editor.execute("SELECT set_config('oracle.scope', '', false)")
