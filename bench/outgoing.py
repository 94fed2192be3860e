"""Per-row cost of building pushes on the send path (`delivery.services._Outgoing`).

    python bench/outgoing.py [--rows 20000] [--repeat 5]

No database, no network: rows are `_Row` records made in memory, as `_load` returns
them, and each is turned into its OutgoingPush the way a sub-batch does. Prints the
best of --repeat runs in microseconds per row for: a plain campaign (payloads shared
by language and platform), a silent one, and a personalized one (title and body with
placeholders, distinct per user), plus the JSON encoding a sender then does per push,
for scale. Timing goals live here, never in tests (STYLE.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import timeit
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

from delivery import services  # noqa: E402
from delivery.payloads import PushContent  # noqa: E402

LANGUAGES = ("en", "fr", "de", "pt-BR", "")
NOW = datetime(2030, 1, 1, tzinfo=UTC)


def make_rows(count: int, personal: bool) -> list[services._Row]:
    rows = []
    for i in range(count):
        apns = i % 2 == 0
        row = services._Row(
            pk=10_000_000 + i,
            campaign_id=uuid.UUID(int=1),
            run=1,
            token_id=i,
            app_user_id=uuid.UUID(int=i),
            provider="apns" if apns else "fcm",
            attempts=1,
            token=("ab" * 32) if apns else "f" * 150,
            platform="ios" if apns else "android",
            language=LANGUAGES[i % len(LANGUAGES)],
            timezone="",
        )
        if personal:  # a distinct text per user: the worst case
            row.values = {"first_name": f"user{i}", "city": None}
        rows.append(row)
    return rows


def content(**extra: object) -> PushContent:
    return PushContent(
        title="Spring sale",
        body="Everything is 20% off until Sunday.",
        data={"coupon": "SPRING20", "screen": "sale"},
        localizations={"fr": {"title": "Soldes", "body": "Tout à -20 % jusqu'à dimanche."}},
        url="myapp://sale",
        collapse_id_default="c-00000000-0000-0000-0000-000000000001",
        campaign_id="00000000-0000-0000-0000-000000000001",
        **extra,  # type: ignore[arg-type]
    )


def per_row_us(run: Callable[[], object], rows: int, repeat: int) -> float:
    return min(timeit.repeat(run, number=1, repeat=repeat)) / rows * 1e6


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    cases: list[tuple[str, PushContent, bool]] = [("plain", content(), False)]
    cases.append(("silent", content(silent=True), False))
    personal = dataclasses.replace(
        content(),
        title="Hi {{ first_name | default: 'there' }}",
        body="{{ first_name | capitalize }}, {{ city | default: 'your city' }} sale is on.",
        localizations={},
    )
    cases.append(("personalized", personal, True))
    for name, push_content, personal_rows in cases:
        rows = make_rows(args.rows, personal_rows)

        def build(c: PushContent = push_content, rs: list[services._Row] = rows) -> None:
            outgoing = services._Outgoing(c, NOW)
            for row in rs:
                outgoing(row)

        us = per_row_us(build, args.rows, args.repeat)
        print(f"{name:13s} _Outgoing per row: {us:6.2f} us")
    outgoing = services._Outgoing(content(), NOW)
    pushes = [
        push for row in make_rows(args.rows, False) if not isinstance(push := outgoing(row), str)
    ]

    def encode() -> None:
        for push in pushes:
            json.dumps(push.payload, ensure_ascii=False, separators=(",", ":")).encode()

    encoded = per_row_us(encode, args.rows, args.repeat)
    print(f"{'(scale)':13s} sender's json.dumps per push: {encoded:6.2f} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
