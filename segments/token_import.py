"""Streaming bulk import of users, attributes and device tokens (`manage.py import_tokens`).

The file is read line by line and written in batches: per batch one SELECT of the
users and one of the tokens it names, then one INSERT ... ON CONFLICT DO UPDATE for
each table, so memory stays bounded by the batch size and re-running a file is
harmless (rows already as the file says are left untouched and count as unchanged).
Every line is cleaned with the same functions as the registration API, so a line
the API would refuse is rejected here with the API's error code as the reason.

Formats:

* CSV with a header row. Columns: external_id, token, provider, platform, locale,
  timezone, app_version, endpoint, p256dh, auth (the last three: a web push
  subscription, with provider `webpush` and no token), and `attr.<key>` (a string)
  or `attr.<key>:number|boolean|string` for typed attributes. Empty cells mean "not
  given".
* JSON lines: {"external_id": ..., "attributes": {...}, "tokens": [{"token",
  "provider", "platform", "locale", "timezone", "app_version"}]}; a web push token
  is {"provider": "webpush", "subscription": {"endpoint", "keys": {"p256dh", "auth"}}}
  as the registration API takes it.

A line needs an external_id, a token, or both (a token without a user is anonymous).
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from core.errors import InvalidInput
from core.models import Project
from delivery.models import PushToken
from segments.models import AppUser
from segments.services import (
    TokenRegistration,
    clean_attributes,
    clean_external_id,
    clean_token_registration,
    merge_attributes,
)

SUBSCRIPTION_COLUMNS = ("endpoint", "p256dh", "auth")
CSV_COLUMNS = (
    "external_id",
    "token",
    "provider",
    "platform",
    "locale",
    "timezone",
    "app_version",
    *SUBSCRIPTION_COLUMNS,
)
ATTR_PREFIX = "attr."
ATTR_TYPES = ("string", "number", "boolean")
JSONL_KEYS = ("external_id", "attributes", "tokens")
EXAMPLE_LINES = 5
ANALYZE_FIRST_AT = 10_000
MAX_TOKENS_PER_LINE = 100
TOKEN_UPDATE_FIELDS = (
    "app_user",
    "platform",
    "active",
    "invalidated_at",
    "invalid_reason",
    "last_registered_at",
    "locale",
    "timezone",
    "app_version",
    "keys",
)


class Rejected(Exception):
    """A line that cannot be imported; `reason` is a lower-case error code."""

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(message or reason)
        self.reason = reason


def _rejected(exc: InvalidInput) -> Rejected:
    return Rejected(exc.code.lower(), exc.message)


@dataclass
class Line:
    number: int
    external_id: str | None
    attributes: dict[str, Any]
    tokens: list[TokenRegistration]


@dataclass
class ImportSummary:
    lines: int = 0
    imported: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[int]] = field(default_factory=dict)
    seconds: float = 0.0

    def reject(self, number: int, reason: str) -> None:
        self.rejected += 1
        self.reasons[reason] += 1
        examples = self.examples.setdefault(reason, [])
        if len(examples) < EXAMPLE_LINES:
            examples.append(number)

    def absorb(self, other: ImportSummary) -> None:
        """Add a batch's counts (its rejections come from the write step)."""
        self.imported += other.imported
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.rejected += other.rejected
        for reason, count in other.reasons.items():
            self.reasons[reason] += count
            examples = self.examples.setdefault(reason, [])
            room = EXAMPLE_LINES - len(examples)
            examples.extend(other.examples[reason][: max(room, 0)])
            examples.sort()
            del examples[EXAMPLE_LINES:]

    def as_dict(self) -> dict[str, Any]:
        return {
            "lines": self.lines,
            "imported": self.imported,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": self.rejected,
            "rejections": {
                reason: {"count": count, "lines": self.examples[reason]}
                for reason, count in sorted(self.reasons.items())
            },
            "seconds": round(self.seconds, 3),
        }


# ------------------------------------------------------------------------ parsing


def _line(number: int, external_id: Any, attributes: Any, tokens: list[Any]) -> Line:
    """Clean one record's values with the registration API's rules."""
    try:
        clean_id = None if external_id in (None, "") else clean_external_id(external_id)
        clean_attrs = clean_attributes(attributes) if attributes else {}
        registrations = [
            clean_token_registration({**token, "external_id": clean_id}) for token in tokens
        ]
    except InvalidInput as exc:
        raise _rejected(exc) from exc
    if clean_id is None and clean_attrs:
        raise Rejected("missing_external_id", "attributes need an external_id")
    if clean_id is None and not registrations:
        raise Rejected("missing_external_id", "a line needs an external_id or a token")
    return Line(number, clean_id, clean_attrs, registrations)


def _typed(key: str, kind: str, text: str) -> Any:
    if kind == "string":
        return text
    if kind == "boolean":
        lowered = text.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise Rejected("invalid_attributes", f"attr.{key}: '{text}' is not a boolean")
    try:
        number = float(text)
    except ValueError as exc:
        raise Rejected("invalid_attributes", f"attr.{key}: '{text}' is not a number") from exc
    return int(number) if number.is_integer() and "." not in text and "e" not in text else number


def _subscription(fields: dict[str, str]) -> dict[str, Any]:
    """A CSV row's endpoint/p256dh/auth cells as the registration API's subscription."""
    keys = {name: fields[name] for name in ("p256dh", "auth") if name in fields}
    subscription: dict[str, Any] = {"keys": keys}
    if "endpoint" in fields:
        subscription["endpoint"] = fields["endpoint"]
    return subscription


def _csv_header(header: list[str]) -> list[tuple[str, str, str]]:
    """(column kind, name, type) per column; unknown columns stop the import."""
    layout = []
    for column in header:
        name = column.strip()
        if name in CSV_COLUMNS:
            layout.append(("field", name, "string"))
        elif name.startswith(ATTR_PREFIX):
            key, _, kind = name[len(ATTR_PREFIX) :].partition(":")
            kind = kind or "string"
            if kind not in ATTR_TYPES:
                raise ValueError(f"column '{name}': type must be one of {', '.join(ATTR_TYPES)}")
            layout.append(("attr", key, kind))
        else:
            raise ValueError(
                f"unknown column '{name}' (expected {', '.join(CSV_COLUMNS)} or attr.<key>)"
            )
    return layout


def parse_csv(lines: Iterator[str]) -> Iterator[tuple[int, Line | Rejected]]:
    reader = csv.reader(lines)
    try:
        header = next(reader)
    except StopIteration:
        return
    layout = _csv_header(header)
    for row in reader:
        number = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(layout):
            yield number, Rejected("wrong_column_count")
            continue
        fields: dict[str, str] = {}
        attributes: dict[str, Any] = {}
        try:
            for (kind, name, type_), cell in zip(layout, row, strict=True):
                if cell == "":
                    continue
                if kind == "field":
                    fields[name] = cell
                else:
                    attributes[name] = _typed(name, type_, cell)
            token: dict[str, Any] = {
                k: v
                for k, v in fields.items()
                if k != "external_id" and k not in SUBSCRIPTION_COLUMNS
            }
            if any(name in fields for name in SUBSCRIPTION_COLUMNS):
                token["subscription"] = _subscription(fields)
            yield (
                number,
                _line(number, fields.get("external_id"), attributes, [token] if token else []),
            )
        except Rejected as exc:
            yield number, exc


def parse_jsonl(lines: Iterator[str]) -> Iterator[tuple[int, Line | Rejected]]:
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except ValueError:
            yield number, Rejected("invalid_json")
            continue
        try:
            if not isinstance(record, dict) or set(record) - {
                "external_id",
                "attributes",
                "tokens",
            }:
                raise Rejected("invalid_line", "expected {external_id, attributes, tokens}")
            tokens = record.get("tokens") or []
            if not isinstance(tokens, list) or not all(isinstance(t, dict) for t in tokens):
                raise Rejected("invalid_line", "tokens must be a list of objects")
            if len(tokens) > MAX_TOKENS_PER_LINE:
                raise Rejected("invalid_line", f"at most {MAX_TOKENS_PER_LINE} tokens per line")
            if any("external_id" in t for t in tokens):
                raise Rejected("invalid_line", "a token takes the line's external_id")
            yield number, _line(number, record.get("external_id"), record.get("attributes"), tokens)
        except Rejected as exc:
            yield number, exc


# ----------------------------------------------------------------------- writing


_TOKEN_STATE: tuple[str, ...] = (
    "app_user_id",
    "platform",
    "active",
    "invalidated_at",
    "invalid_reason",
    "locale",
    "timezone",
    "app_version",
    "keys",
)


def _load(project: Project, lines: list[Line]) -> tuple[dict[str, Any], dict[Any, Any]]:
    """The batch's existing users and tokens as plain dicts (no model instances:
    most rows of a re-import are only compared, never written)."""
    external_ids = {line.external_id for line in lines if line.external_id}
    users = {
        row["external_id"]: row
        for row in AppUser.objects.filter(project=project, external_id__in=external_ids).values(
            "id", "external_id", "attributes"
        )
    }
    by_provider: dict[str, list[str]] = {}
    for line in lines:
        for registration in line.tokens:
            by_provider.setdefault(registration.provider, []).append(registration.token)
    if not by_provider:
        return users, {}
    # Provider and token together, so each lookup uses the whole unique index.
    lookup = Q()
    for provider, strings in by_provider.items():
        lookup |= Q(provider=provider, token__in=strings)
    # Locked now, before the batch's users: the lock order of every token writer
    # (segments/migrations/0003's triggers lock users after token rows).
    rows = (
        PushToken.objects.select_for_update()
        .filter(lookup, project=project)
        .values("provider", "token", *_TOKEN_STATE)
    )
    return users, {(row["provider"], row["token"]): row for row in rows}


def _apply(project: Project, lines: list[Line], summary: ImportSummary, now: datetime) -> None:
    """Write one batch: lines are applied in order against the batch's in-memory state."""
    users, tokens = _load(project, lines)
    changed_users: dict[str, dict[str, Any]] = {}
    changed_tokens: dict[tuple[str, str], dict[str, Any]] = {}
    for line in lines:
        created = changed = False
        user = users.get(line.external_id) if line.external_id else None
        if line.external_id is not None:
            patch = dict(line.attributes)
            for registration in line.tokens:
                patch.update(registration.profile_attributes())
            try:
                merged = merge_attributes(user["attributes"] if user else {}, patch)
            except InvalidInput as exc:
                summary.reject(line.number, exc.code.lower())
                continue
            if user is None:
                user = {"id": uuid.uuid4(), "external_id": line.external_id, "attributes": {}}
                users[line.external_id] = user
                created = True
            if created or merged != user["attributes"]:
                user["attributes"] = merged
                changed_users[line.external_id] = user
                changed = True
        for registration in line.tokens:
            key = (registration.provider, registration.token)
            token = tokens.get(key)
            if token is None:
                token = dict.fromkeys(_TOKEN_STATE)
                tokens[key] = token
                created = True
            # Like the API: a line without external_id keeps the token's current owner.
            wanted = {
                "app_user_id": user["id"] if user is not None else token["app_user_id"],
                "platform": registration.platform,
                "active": True,
                "invalidated_at": None,
                "invalid_reason": "",
                "locale": registration.locale or token["locale"] or "",
                "timezone": registration.timezone or token["timezone"] or "",
                "app_version": registration.app_version or token["app_version"] or "",
                # Web push: the file's keys replace the stored ones, as a registration's do.
                "keys": registration.keys if registration.keys is not None else token["keys"],
            }
            if created or any(token[k] != v for k, v in wanted.items()):
                token.update(wanted)
                changed_tokens[key] = token
                changed = True
        if created:
            summary.imported += 1
        elif changed:
            summary.updated += 1
        else:
            summary.unchanged += 1
    if connection.vendor == "postgresql":
        _copy_upsert(project, list(changed_users.values()), changed_tokens, now)
    else:
        _orm_upsert(project, list(changed_users.values()), changed_tokens, now)


def _orm_upsert(
    project: Project,
    users: list[dict[str, Any]],
    tokens: dict[tuple[str, str], dict[str, Any]],
    now: datetime,
) -> None:
    """INSERT ... ON CONFLICT DO UPDATE through the ORM (SQLite, the embedded default)."""
    if users:
        AppUser.objects.bulk_create(
            [AppUser(project_id=project.pk, **row) for row in users],
            update_conflicts=True,
            unique_fields=["project", "external_id"],
            update_fields=["attributes"],
        )
    if tokens:
        PushToken.objects.bulk_create(
            [
                PushToken(
                    project_id=project.pk,
                    provider=provider,
                    token=token,
                    last_registered_at=now,
                    **{name: state[name] for name in _TOKEN_STATE},
                )
                for (provider, token), state in tokens.items()
            ],
            update_conflicts=True,
            unique_fields=["project", "provider", "token"],
            update_fields=list(TOKEN_UPDATE_FIELDS),
        )


# PostgreSQL: COPY the batch into a temporary table, then one INSERT ... SELECT ... ON
# CONFLICT per table. Several times faster than bulk_create, which builds a model
# instance and adapts every value in Python.
_PG_STAGING = (
    "CREATE TEMP TABLE IF NOT EXISTS import_users "
    "(id uuid, external_id text, attributes jsonb) ON COMMIT DELETE ROWS",
    "CREATE TEMP TABLE IF NOT EXISTS import_tokens (provider text, token text, "
    "app_user_id uuid, platform text, locale text, timezone text, app_version text, "
    "keys jsonb) "
    "ON COMMIT DELETE ROWS",
)
_PG_UPSERT_USERS = (
    "INSERT INTO app_users (id, project_id, external_id, attributes, created_at) "
    "SELECT id, %s, external_id, attributes, %s FROM import_users "
    "ON CONFLICT (project_id, external_id) DO UPDATE SET attributes = EXCLUDED.attributes"
)
_PG_UPSERT_TOKENS = (
    "INSERT INTO push_tokens (project_id, provider, token, app_user_id, platform, active, "
    "locale, timezone, app_version, created_at, last_registered_at, invalidated_at, "
    "invalid_reason, keys) "
    "SELECT %s, provider, token, app_user_id, platform, true, locale, timezone, app_version, "
    "%s, %s, NULL, '', keys FROM import_tokens "
    "ON CONFLICT (project_id, provider, token) DO UPDATE SET "
    "app_user_id = EXCLUDED.app_user_id, platform = EXCLUDED.platform, active = true, "
    "invalidated_at = NULL, invalid_reason = '', "
    "last_registered_at = EXCLUDED.last_registered_at, locale = EXCLUDED.locale, "
    "timezone = EXCLUDED.timezone, app_version = EXCLUDED.app_version, keys = EXCLUDED.keys"
)


def _copy_upsert(
    project: Project,
    users: list[dict[str, Any]],
    tokens: dict[tuple[str, str], dict[str, Any]],
    now: datetime,
) -> None:
    from psycopg.types.json import Jsonb

    with connection.cursor() as cursor:
        raw = cursor.cursor
        for statement in _PG_STAGING:
            cursor.execute(statement)
        # Empty even when the batch is a savepoint inside an outer transaction.
        cursor.execute("TRUNCATE import_users, import_tokens")
        if users:
            with raw.copy("COPY import_users (id, external_id, attributes) FROM STDIN") as copy:
                for row in users:
                    copy.write_row((row["id"], row["external_id"], Jsonb(row["attributes"])))
            cursor.execute(_PG_UPSERT_USERS, [project.pk, now])
        if tokens:
            columns = "provider, token, app_user_id, platform, locale, timezone, app_version, keys"
            with raw.copy(f"COPY import_tokens ({columns}) FROM STDIN") as copy:
                for (provider, token), state in tokens.items():
                    copy.write_row(
                        (
                            provider,
                            token,
                            state["app_user_id"],
                            state["platform"],
                            state["locale"],
                            state["timezone"],
                            state["app_version"],
                            None if state["keys"] is None else Jsonb(state["keys"]),
                        )
                    )
            cursor.execute(_PG_UPSERT_TOKENS, [project.pk, now, now])


def _write(project: Project, lines: list[Line], summary: ImportSummary) -> None:
    """One transaction per batch; one retry when a concurrent registration won a race.

    The retry re-reads the batch's rows, so it counts against what is now stored.
    """
    for attempt in (1, 2):
        counts = ImportSummary()
        try:
            with transaction.atomic():
                _apply(project, lines, counts, timezone.now())
        except IntegrityError:
            if attempt == 2:
                raise
            continue
        summary.absorb(counts)
        return


def _refresh_statistics() -> None:
    """ANALYZE the tables the import fills, at 10k, 20k, 40k... lines.

    Without it PostgreSQL plans each batch's lookups with the statistics of the
    empty project it started with and scans the whole project per batch: imports
    slow to a crawl as they grow. Doubling keeps the cost to a few ANALYZEs.
    """
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE app_users")
        cursor.execute("ANALYZE push_tokens")


class _ByteCounter:
    """Decodes a binary stream line by line, counting the bytes consumed (for progress)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.consumed = 0
        self.decoder = codecs.getincrementaldecoder("utf-8-sig")()

    def __iter__(self) -> Iterator[str]:
        for raw in self.stream:
            self.consumed += len(raw)
            yield self.decoder.decode(raw)


def import_file(
    *,
    project: Project,
    path: Path,
    file_format: str,
    batch_size: int = 1000,
    progress: Callable[[int, int, int], None] | None = None,
) -> ImportSummary:
    """Import `path` into `project`; `progress(lines, bytes_read, bytes_total)` is
    called after every batch. Raises ValueError for a bad CSV header."""
    started = time.monotonic()
    summary = ImportSummary()
    analyze_at = ANALYZE_FIRST_AT
    total_bytes = path.stat().st_size
    with path.open("rb") as stream:
        source = _ByteCounter(stream)
        parse = parse_csv if file_format == "csv" else parse_jsonl
        batch: list[Line] = []
        for number, parsed in parse(iter(source)):
            summary.lines += 1
            if isinstance(parsed, Rejected):
                summary.reject(number, parsed.reason)
            else:
                batch.append(parsed)
            if len(batch) >= batch_size:
                _write(project, batch, summary)
                batch = []
                if summary.lines >= analyze_at:
                    _refresh_statistics()
                    analyze_at *= 2
                if progress is not None:
                    progress(summary.lines, source.consumed, total_bytes)
        if batch:
            _write(project, batch, summary)
        if progress is not None:
            progress(summary.lines, source.consumed, total_bytes)
    summary.seconds = time.monotonic() - started
    return summary


def guess_format(path: Path) -> str:
    return "csv" if path.suffix.lower() in (".csv", ".tsv") else "jsonl"


def format_summary(summary: ImportSummary) -> str:
    rate = summary.lines / summary.seconds if summary.seconds else 0.0
    out = io.StringIO()
    out.write(
        f"{summary.lines} lines in {summary.seconds:.1f}s ({rate:,.0f} lines/s): "
        f"{summary.imported} imported, {summary.updated} updated, "
        f"{summary.unchanged} unchanged, {summary.rejected} rejected\n"
    )
    for reason, count in sorted(summary.reasons.items()):
        lines = ", ".join(str(n) for n in summary.examples[reason])
        more = ", ..." if count > len(summary.examples[reason]) else ""
        out.write(f"  rejected {reason}: {count} (lines {lines}{more})\n")
    return out.getvalue()
