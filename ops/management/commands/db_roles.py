"""Creates or updates the database roles the processes connect as. Idempotent.

    python manage.py db_roles            # after `migrate`, as the owner (or a superuser)

- the web role (default `oracle_web`): the web process. Row-level security applies to it;
  each request sets its scope (core.scoping), and with none set it sees no user's rows.
- the worker role (default `oracle_worker`): beat, scan and execute workers and management
  commands. Its sessions start in the system scope (`oracle.scope = system`, a per-database
  role setting), so they see every user's rows, as their work needs.

Both may read and write the tables (DML only, no DDL); neither is a superuser, may bypass
row-level security, or owns a table, so FORCE ROW LEVEL SECURITY binds them. Run it again
after migrations that add tables; default privileges cover tables the owner creates later.
Passwords come from ORACLE_DB_WEB_PASSWORD / ORACLE_DB_WORKER_PASSWORD (none: unchanged).
"""

import os

from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from psycopg import sql


class Command(BaseCommand):
    help = "Create or update the web and worker database roles (PostgreSQL)."

    def add_arguments(self, parser):
        parser.add_argument("--web-role", default="oracle_web")
        parser.add_argument("--worker-role", default="oracle_worker")

    def handle(self, *args, web_role: str, worker_role: str, **options):
        if connection.vendor != "postgresql":
            raise CommandError("Database roles and row-level security need PostgreSQL.")
        database = connection.settings_dict["NAME"]
        self._role(web_role, os.environ.get("ORACLE_DB_WEB_PASSWORD"), database)
        self._role(worker_role, os.environ.get("ORACLE_DB_WORKER_PASSWORD"), database)
        self._execute(
            "ALTER ROLE {} IN DATABASE {} RESET oracle.scope",
            sql.Identifier(web_role),
            sql.Identifier(database),
        )
        self._execute(
            "ALTER ROLE {} IN DATABASE {} SET oracle.scope = 'system'",
            sql.Identifier(worker_role),
            sql.Identifier(database),
        )
        self.stdout.write(f"roles ready in {database}: web={web_role}, worker={worker_role}")

    def _role(self, role: str, password: str | None, database: str) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = %s", [role])
            existing = cursor.fetchone()
        name = sql.Identifier(role)
        if existing is None:
            self._execute("CREATE ROLE {} LOGIN", name)
        elif any(existing):
            # Such a role would skip row-level security: refuse rather than weaken it.
            raise CommandError(f"Role {role} is a superuser or bypasses row-level security.")
        else:
            self._execute("ALTER ROLE {} LOGIN", name)
        if password:
            self._execute("ALTER ROLE {} PASSWORD {}", name, sql.Literal(password))
        owned = self._owned_tables(role)
        if owned:
            raise CommandError(f"Role {role} owns {', '.join(owned)}: it must not own tables.")
        self._execute("GRANT CONNECT ON DATABASE {} TO {}", sql.Identifier(database), name)
        self._execute("GRANT USAGE ON SCHEMA public TO {}", name)
        for statement in (
            "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {}",
            "GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {}",
            "ALTER DEFAULT PRIVILEGES IN SCHEMA public "
            "GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {}",
            "ALTER DEFAULT PRIVILEGES IN SCHEMA public "
            "GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {}",
        ):
            self._execute(statement, name)

    @staticmethod
    def _owned_tables(role: str) -> list[str]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tableowner = %s",
                [role],
            )
            return [row[0] for row in cursor.fetchall()]

    @staticmethod
    def _execute(template: str, *parts: sql.Composable) -> None:
        connection.ensure_connection()
        statement = sql.SQL(template).format(*parts).as_string(connection.connection)
        with connection.cursor() as cursor:
            cursor.execute(statement)
