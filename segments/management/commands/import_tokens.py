"""`manage.py import_tokens FILE --project ID`: bulk import users and device tokens."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, CommandParser

from core.audit import AuditedCommand
from core.models import Project
from segments.token_import import format_summary, guess_format, import_file


class Command(AuditedCommand):
    help = (
        "Import users, attributes and device tokens from a CSV (header: external_id, token, "
        "provider, platform, locale, timezone, app_version, attr.<key>[:number|boolean]) or "
        "JSON-lines file ({external_id, attributes, tokens: [...]}). Streaming and idempotent."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--project", required=True, help="Project id (uuid).")
        parser.add_argument("--format", choices=("csv", "jsonl"), help="Default: by extension.")
        parser.add_argument("--batch-size", type=int, default=1000)
        parser.add_argument("--json", action="store_true", help="Print the summary as JSON.")
        parser.add_argument("--quiet", action="store_true", help="No progress line.")

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        if not path.is_file():
            raise CommandError(f"{path}: no such file")
        if not 1 <= options["batch_size"] <= 50_000:
            raise CommandError("--batch-size must be between 1 and 50000")
        try:
            project = Project.objects.get(pk=uuid.UUID(options["project"]))
        except (ValueError, Project.DoesNotExist) as exc:
            raise CommandError(f"project {options['project']} not found") from exc
        started = time.monotonic()
        self.stderr.style_func = None  # progress is not an error: no red

        def progress(lines: int, done: int, total: int) -> None:
            if options["quiet"]:
                return
            elapsed = max(time.monotonic() - started, 1e-9)
            percent = 100 * done / total if total else 100.0
            bar = "#" * int(percent / 5)
            self.stderr.write(
                f"\r[{bar:<20}] {percent:5.1f}%  {lines:,} lines  {lines / elapsed:,.0f} lines/s",
                ending="",
            )
            self.stderr.flush()

        try:
            summary = import_file(
                project=project,
                path=path,
                file_format=options["format"] or guess_format(path),
                batch_size=options["batch_size"],
                progress=progress,
            )
        except ValueError as exc:  # a bad CSV header: nothing was imported
            raise CommandError(f"{path}: {exc}") from exc
        if not options["quiet"]:
            self.stderr.write("")
        if options["json"]:
            self.stdout.write(json.dumps(summary.as_dict()))
        else:
            self.stdout.write(format_summary(summary), ending="")
