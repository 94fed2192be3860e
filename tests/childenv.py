"""What a child process (a Celery worker, run_stack, the MCP stdio server) started by
a test needs to use the test's own database."""

from __future__ import annotations

from django.db import connection


def database_env() -> dict[str, str]:
    """Point a child process at the test database the test process is using."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return {"HERALD_SQLITE_PATH": str(db["NAME"])}
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or "5432"
    return {"DATABASE_URL": f"postgres://{user}{password}@{host}:{port}/{db['NAME']}"}
