"""Bulk import speed and memory: `manage.py import_tokens` on a generated file.

    python bench/import_tokens.py [--lines 1000000] [--format csv|jsonl] [--batch-size 1000]
                                  [--bad-share 0.01] [--database-url URL]

1. PostgreSQL by default (``BENCH_DATABASE_URL`` or the URL below, its own database;
   a ``sqlite:///`` URL works too): creates it if missing, migrates it, empties it.
2. Writes N lines (users with attributes and one token each, a few with a second
   token; ``--bad-share`` of them malformed) to a temporary file, streaming.
3. Runs the real command in a child process, twice: a first import (everything
   new) and a re-import of the same file (everything unchanged: idempotence), and
   prints lines/s and the child's peak RSS (VmHWM, sampled while it runs), which
   must not grow with N.

The last line is a SUMMARY.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.setup_db import ensure_database, log  # noqa: E402  (after the path above)

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/herald_bench_import"
COUNTRIES = ["US", "IN", "BR", "DE", "GB", "FR", "JP", "CA", "MX", "ES"]
LOCALES = ["en_US", "hi_IN", "pt_BR", "de_DE", "en_GB", "fr_FR", "ja_JP", "en_CA", "es_MX"]


def _fcm(rng: random.Random) -> str:
    return f"{rng.getrandbits(128):032x}:APA91b{rng.getrandbits(512):0128x}"[:152]


def write_file(path: Path, lines: int, file_format: str, bad_share: float) -> None:
    """Stream N records to `path`; bad ones have a malformed token or provider."""
    rng = random.Random(11)  # bench data, not secrets
    with path.open("w", encoding="utf-8") as out:
        if file_format == "csv":
            out.write(
                "external_id,token,provider,platform,locale,timezone,app_version,"
                "attr.country,attr.age:number,attr.plan\n"
            )
        for i in range(lines):
            apns = rng.random() < 0.5
            token = f"{rng.getrandbits(256):064x}" if apns else _fcm(rng)
            provider, platform = ("apns", "ios") if apns else ("fcm", "android")
            if rng.random() < bad_share:
                token, provider = (token[:20], provider) if apns else (token, "gcm")
            country = rng.choice(COUNTRIES)
            locale = LOCALES[COUNTRIES.index(country) % len(LOCALES)]
            age = rng.randrange(16, 80)
            plan = rng.choice(["free", "free", "free", "pro"])
            if file_format == "csv":
                out.write(
                    f"user-{i},{token},{provider},{platform},{locale},Europe/Paris,3.{i % 7}.0,"
                    f"{country},{age},{plan}\n"
                )
            else:
                record: dict[str, Any] = {
                    "external_id": f"user-{i}",
                    "attributes": {"country": country, "age": age, "plan": plan},
                    "tokens": [
                        {
                            "token": token,
                            "provider": provider,
                            "platform": platform,
                            "locale": locale,
                            "app_version": f"3.{i % 7}.0",
                        }
                    ],
                }
                if rng.random() < 0.1:
                    record["tokens"].append(
                        {"token": _fcm(rng), "provider": "fcm", "platform": "web"}
                    )
                out.write(json.dumps(record) + "\n")


def peak_rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run_import(path: Path, project_id: str, batch_size: int, env: dict[str, str]) -> dict[str, Any]:
    started = time.perf_counter()
    child = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "import_tokens",
            str(path),
            "--project",
            project_id,
            "--batch-size",
            str(batch_size),
            "--json",
            "--quiet",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    peak = 0.0
    while child.poll() is None:
        peak = max(peak, peak_rss_mb(child.pid) or 0.0)
        time.sleep(0.1)
    stdout, stderr = child.communicate()
    elapsed = time.perf_counter() - started
    if child.returncode != 0:
        raise SystemExit(f"import_tokens failed:\n{stderr}")
    summary = json.loads(stdout)
    summary["wall_seconds"] = round(elapsed, 2)
    summary["peak_rss_mb"] = round(peak, 1)
    summary["lines_per_second"] = round(summary["lines"] / elapsed)
    return summary


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--bad-share", type=float, default=0.01)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    database_url = args.database_url or DEFAULT_DATABASE_URL
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="config.settings")
    if database_url.startswith("sqlite:///"):
        env.pop("DATABASE_URL", None)
        env["HERALD_SQLITE_PATH"] = database_url.removeprefix("sqlite:///")
    else:
        env["DATABASE_URL"] = database_url
        ensure_database(database_url)
    os.environ.clear()
    os.environ.update(env)
    result = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"migrate failed:\n{result.stdout}\n{result.stderr}")

    import django

    django.setup()
    from django.db import connection

    from core.models import Project

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE projects RESTART IDENTITY CASCADE")
    else:
        Project.objects.all().delete()
    project = Project.objects.create(name="bench-import")
    connection.close()  # the child imports; do not hold a connection meanwhile

    with tempfile.TemporaryDirectory(prefix="herald-import-") as tmp:
        path = Path(tmp) / f"tokens.{args.format}"
        started = time.perf_counter()
        write_file(path, args.lines, args.format, args.bad_share)
        size_mb = path.stat().st_size / 1e6
        log(
            f"{connection.vendor}: wrote {args.lines:,} {args.format} lines ({size_mb:.0f} MB) "
            f"in {time.perf_counter() - started:.1f} s"
        )
        first = run_import(path, str(project.id), args.batch_size, env)
        log(
            f"first import: {first['lines_per_second']:,} lines/s, {first['wall_seconds']} s, "
            f"peak RSS {first['peak_rss_mb']} MB; imported {first['imported']:,}, updated "
            f"{first['updated']:,}, unchanged {first['unchanged']:,}, "
            f"rejected {first['rejected']:,} {json.dumps(first['rejections'])}"
        )
        again = run_import(path, str(project.id), args.batch_size, env)
        log(
            f"re-import:    {again['lines_per_second']:,} lines/s, {again['wall_seconds']} s, "
            f"peak RSS {again['peak_rss_mb']} MB; imported {again['imported']:,}, updated "
            f"{again['updated']:,}, unchanged {again['unchanged']:,}, "
            f"rejected {again['rejected']:,}"
        )
    summary = {
        "lines": args.lines,
        "format": args.format,
        "vendor": connection.vendor,
        "first": {k: first[k] for k in ("lines_per_second", "peak_rss_mb", "wall_seconds")},
        "reimport": {k: again[k] for k in ("lines_per_second", "peak_rss_mb", "wall_seconds")},
    }
    log(f"SUMMARY {json.dumps(summary)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
