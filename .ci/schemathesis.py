"""Schema check: run schemathesis against a live Herald server (`make schema-check`).

The OpenAPI schema at /api/schema is what clients generate SDKs from, so CI checks
it against the running server, not against itself: a fresh database of its own
(`<DATABASE_URL's name>_schemathesis`, or SQLite in a temporary directory when
DATABASE_URL is unset), migrated; a project and admin key from `create_project
--json`; a little data seeded through the API (a user with a token, a segment,
campaigns, one explicit push so deliveries and runs exist); `runserver` on a free
local port; then schemathesis with a bounded number of examples per operation and
the checks for server errors, response-schema and status-code conformance. Seeded
ids are offered to schemathesis as dictionaries for the path parameters, so detail
operations reach their 200s as well as their 400s and 404s.

Nothing can reach a push provider: the project has no credentials (a test push
answers 502 PUSH_FAILED without a connection), and Celery tasks go to a filesystem
broker in the temporary directory that no worker reads, so nothing is left queued
in the shared Redis. Exits with schemathesis's status; the server is always stopped
and the database dropped. docs/decisions.md says why and how it is bounded.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
CHECKS = (
    "not_a_server_error,response_schema_conformance,status_code_conformance,negative_data_rejection"
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="web server port (default: a free one)")
    parser.add_argument(
        "--max-examples", type=int, default=20, help="fuzzing examples per operation"
    )
    # A fixed seed: CI answers the same for the same code; pass another to explore.
    parser.add_argument("--seed", type=int, default=1, help="schemathesis seed (default 1)")
    # One worker: the server has two cores to itself at most, and hypothesis's lambda
    # introspection is not thread-safe on Python 3.11 (an internal error with two).
    parser.add_argument("--workers", default="1", help="schemathesis workers")
    parser.add_argument("extra", nargs="*", help="more schemathesis options, after --", default=[])
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="herald-schemathesis-") as tmp:
        env = _server_env(Path(tmp))
        database = _create_database(env, Path(tmp))
        try:
            _manage(env, "migrate", "--no-input", "-v", "0")
            created = json.loads(_manage(env, "create_project", "schemathesis", "--json"))
            port = args.port or _free_port()
            base = f"http://127.0.0.1:{port}"
            server = _start_server(env, port, Path(tmp) / "server.log")
            try:
                _wait_healthy(base, server)
                ids = _seed(base, created["project_id"], created["api_key"])
                config = _write_config(Path(tmp), created["api_key"], ids)
                return _run_schemathesis(base, config, args)
            finally:
                _stop(server)
                log = (Path(tmp) / "server.log").read_text(errors="replace")
                tracebacks = log.count("Traceback (most recent call last)")
                if tracebacks:
                    print(f"--- server log: {tracebacks} traceback(s) ---\n{log[-20000:]}")
        finally:
            _drop_database(env, database)


# ----------------------------------------------------------------------- setup


def _server_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        HERALD_VAR_DIR=str(tmp / "var"),
        # Tasks are enqueued but never run: no worker reads this directory.
        CELERY_BROKER_URL="filesystem://localhost/",
        # schemathesis sends hundreds of requests a minute with one key.
        HERALD_API_RATE_PER_MINUTE="1000000",
        HERALD_API_BURST_PER_SECOND="0",
        # ... and its refused requests all come from 127.0.0.1: no per-IP limit on
        # failed authentication (core/throttling.py) either.
        HERALD_AUTH_FAILURES_PER_MINUTE="0",
        DEBUG="false",
        PYTHONUNBUFFERED="1",
    )
    return env


def _create_database(env: dict[str, str], tmp: Path) -> str | None:
    """Point env at a fresh database of our own; returns its name (None: SQLite)."""
    url = env.get("DATABASE_URL", "")
    if not url:
        env["HERALD_SQLITE_PATH"] = str(tmp / "schemathesis.sqlite3")
        return None
    parts = urllib.parse.urlsplit(url)
    name = f"{parts.path.lstrip('/') or 'herald'}_schemathesis"
    env["DATABASE_URL"] = urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))
    _admin_sql(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"')
    return name


def _drop_database(env: dict[str, str], name: str | None) -> None:
    if name is not None:
        _admin_sql(env["DATABASE_URL"], f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _admin_sql(url: str, *statements: str) -> None:
    import psycopg  # the project's driver; imported here so SQLite runs need no server

    parts = urllib.parse.urlsplit(url)
    admin = urllib.parse.urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement.encode())


def _manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        sys.exit(f"manage.py {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start_server(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait_healthy(base: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"the web server exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=5) as response:
                if response.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.5)
    sys.exit("the web server did not answer /healthz within 90 s")


def _stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


# ------------------------------------------------------------------------ seed


def _call(base: str, key: str, method: str, path: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        f"{base}{path}",
        method=method,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        sys.exit(f"seeding {method} {path} failed: {exc.code} {exc.read().decode()}")


def _seed(base: str, project_id: str, key: str) -> dict[str, list[str]]:
    """A user with a token, a segment and three campaigns (one pushed to the user)."""
    v1 = f"/v1/projects/{project_id}"
    admin = f"/admin/projects/{project_id}"
    external_id = "schemathesis-user"
    token = secrets.token_hex(32)
    user = _call(base, key, "PUT", f"{v1}/users/{external_id}", {"attributes": {"country": "FR"}})
    _call(
        base,
        key,
        "POST",
        f"{v1}/tokens",
        {"token": token, "provider": "apns", "platform": "ios", "external_id": external_id},
    )
    segment = _call(
        base,
        key,
        "POST",
        f"{admin}/segments",
        {"name": "French users", "rules": {"attr": "country", "op": "eq", "value": "FR"}},
    )
    campaigns = [
        _call(
            base,
            key,
            "POST",
            f"{admin}/push/campaigns",
            {"title": f"Hello {n}", "body": "From schemathesis", "segment_id": segment["id"]},
        )["id"]
        for n in range(3)
    ]
    _call(
        base,
        key,
        "POST",
        f"{admin}/push/campaigns/{campaigns[0]}/push",
        {"user_ids": [external_id]},
    )
    return {
        "app_user_id": [user["id"]],
        "project_id": [project_id],
        "campaign_id": campaigns,
        "segment_id": [segment["id"]],
        "external_id": [external_id],
        "token": [token],
    }


# ----------------------------------------------------------------- schemathesis


def _toml_list(values: list[str]) -> str:
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


def _write_config(tmp: Path, key: str, ids: dict[str, list[str]]) -> Path:
    """schemathesis.toml: the key, the project, and seeded ids for the path parameters.

    The project id is fixed (another project's URL is only ever 404); the other
    path parameters take a seeded id half the time and a generated value otherwise.
    """
    lines = [
        f'headers = {{ Authorization = "Bearer {key}" }}',
        "",
        "[dictionaries]",
        *(f"{name} = {{ values = {_toml_list(values)} }}" for name, values in ids.items()),
        "",
        "[parameters]",
        f'"path.project_id" = {json.dumps(ids["project_id"][0])}',
        '"body.app_user_id" = { dictionary = "app_user_id", probability = 0.5 }',
        *(
            f'"path.{name}" = {{ dictionary = "{name}", probability = 0.5 }}'
            for name in ids
            if name not in ("project_id", "app_user_id")
        ),
        "",
        # A test push is sent at once; with no credentials the documented answer is
        # 502 PUSH_FAILED ("the provider refused"), not a server fault.
        "[[operations]]",
        'include-path-regex = "/test/$"',
        'checks.not_a_server_error.expected-statuses = ["2XX", "3XX", "4XX", "502"]',
        "",
        # Events are refused one by one inside a 200 (the rest of the batch is kept:
        # docs/api.md, "Events"), so a schema-invalid *event* is answered 200 by
        # design; a wrong envelope is still 400 (tests/segments/test_events.py), and
        # the other checks hold as everywhere. (`enabled = false` would not do: the
        # command line's --checks overrides it per operation.)
        # The project id is fixed above, so a "negative" project_id schemathesis means
        # to send is replaced by the real one and a valid request is reported as
        # schema-violating data accepted (upstream false positives of this kind:
        # schemathesis#2312, #4601). Seen on this route with seed 1 (campaign and
        # run 1 both seeded); its own invalid values (campaign id, run number) still
        # answer 400/404, tests/campaigns/test_analytics.py.
        "[[operations]]",
        'include-path-regex = "/runs/[{]number[}]/analytics/$"',
        'checks.negative_data_rejection.expected-statuses = ["200", "400", "401", "403", '
        '"404", "405", "406", "415", "422"]',
        "",
        "[[operations]]",
        'include-path-regex = "/events/$"',
        'checks.negative_data_rejection.expected-statuses = ["200", "400", "401", "403", '
        '"404", "406", "413", "415", "422"]',
    ]
    config = tmp / "schemathesis.toml"
    config.write_text("\n".join(lines) + "\n")
    return config


def _run_schemathesis(base: str, config: Path, args: argparse.Namespace) -> int:
    command = [
        str(VENV_BIN / "schemathesis"),
        "--config-file",
        str(config),
        "--no-color",
        "run",
        f"{base}/api/schema",
        "--checks",
        CHECKS,
        "--max-examples",
        str(args.max_examples),
        "--workers",
        args.workers,
        "--phases",
        "examples,coverage,fuzzing",
        "--generation-database",
        "none",
        "--request-timeout",
        "30",
        "--suppress-health-check",
        "too_slow",
        "--seed",
        str(args.seed),
        *args.extra,
    ]
    report = config.parent / "report.json"
    command += ["--report", "json", "--report-json-path", str(report)]
    started = time.monotonic()
    result = subprocess.run(command, cwd=config.parent, stdin=subprocess.DEVNULL, check=False)
    print(f"schemathesis: exit {result.returncode} in {time.monotonic() - started:.0f} s")
    # Last, the plain count line CI reads (schemathesis's own summary has none).
    cases = json.loads(report.read_text())["test_cases"] if report.exists() else {}
    failed = cases.get("with_failures", 0) + cases.get("errored", 0)
    passed = cases.get("generated", 0) - failed
    print(f"schemathesis: {passed} passed, {failed} failed")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
