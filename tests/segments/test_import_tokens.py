"""`manage.py import_tokens` on small CSV and JSON-lines files with good and bad lines."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from delivery.models import PushToken
from segments.models import AppUser
from tests.segments.helpers import (
    apns_token,
    audience_state,
    fcm_token,
    make_project,
    make_token,
    make_user,
)

pytestmark = pytest.mark.django_db

HEADER = (
    "external_id,token,provider,platform,locale,timezone,app_version,"
    "attr.country,attr.age:number,attr.vip:boolean\n"
)


def run(path: Path, project: Any, *extra: str) -> dict[str, Any]:
    out, err = StringIO(), StringIO()
    call_command(
        "import_tokens",
        str(path),
        "--project",
        str(project.id),
        "--json",
        *extra,
        stdout=out,
        stderr=err,
    )
    summary = json.loads(out.getvalue())
    summary.pop("seconds")
    return summary


def test_csv_import_with_good_and_bad_lines(tmp_path: Path) -> None:
    project = make_project()
    existing = make_user(project, "u2", {"plan": "pro"})
    old_owner = make_user(project, "someone")
    make_token(project, old_owner, apns_token(2), active=False)
    path = tmp_path / "tokens.csv"
    path.write_text(
        HEADER
        + f"u1,{apns_token(1).upper()},apns,ios,fr_FR,Europe/Paris,1.2,fr,31,true\n"  # 2 new
        + f"u2,{apns_token(2)},apns,ios,,,,US,,\n"  # 3 moves+reactivates, user updated
        + f"u3,{fcm_token(3)},fcm,web,,,,,,\n"  # 4 new
        + f"u4,{apns_token(4)},gcm,ios,,,,,,\n"  # 5 invalid_provider
        + "u5,nothex,apns,ios,,,,,,\n"  # 6 invalid_token_format
        + f"u6,{apns_token(6)},apns,android,,,,,,\n"  # 7 invalid_platform
        + "u7,,,,,,,,x,\n"  # 8 invalid_attributes (age not a number)
        + "u8,too,few\n"  # 9 wrong_column_count
        + ",,,,,,,,,\n"  # blank: skipped
        + f",{fcm_token(10)},fcm,android,,,,,,\n"  # 11 anonymous token, new
        + "u9,,,,,,,,,yes\n"  # 12 user only, new
        + f"u1,{apns_token(1)},apns,ios,,,,,,\n"  # 13 same as line 2: unchanged
        + "u10,,,,,Mars/Olympus,,,,\n"  # 14 missing_token (timezone without a token)
    )
    summary = run(path, project)
    assert summary == {
        "lines": 12,  # the blank line is skipped, not counted
        "imported": 4,
        "updated": 1,
        "unchanged": 1,
        "rejected": 6,
        "rejections": {
            "invalid_attributes": {"count": 1, "lines": [8]},
            "invalid_platform": {"count": 1, "lines": [7]},
            "invalid_provider": {"count": 1, "lines": [5]},
            "invalid_token_format": {"count": 1, "lines": [6]},
            "missing_token": {"count": 1, "lines": [14]},
            "wrong_column_count": {"count": 1, "lines": [9]},
        },
    }
    u1 = AppUser.objects.get(external_id="u1")
    assert u1.attributes == {
        "country": "FR",
        "age": 31,
        "vip": True,
        "language": "fr-FR",
        "timezone": "Europe/Paris",
        "app_version": "1.2",
    }
    existing.refresh_from_db()
    assert existing.attributes == {"plan": "pro", "country": "US"}
    moved = PushToken.objects.get(token=apns_token(2))
    assert (moved.app_user_id, moved.active, moved.invalid_reason) == (existing.id, True, "")
    assert PushToken.objects.get(token=apns_token(1)).locale == "fr_FR"
    assert PushToken.objects.get(token=fcm_token(10)).app_user_id is None
    assert AppUser.objects.get(external_id="u9").attributes == {"vip": True}
    assert set(AppUser.objects.values_list("external_id", flat=True)) == {
        "u1",
        "u2",
        "u3",
        "u9",
        "someone",
    }
    assert PushToken.objects.count() == 4


def test_reimport_is_idempotent(tmp_path: Path) -> None:
    project = make_project()
    path = tmp_path / "tokens.csv"
    path.write_text(
        HEADER
        + f"u1,{apns_token(1)},apns,ios,en,,,US,1,false\n"
        + f"u2,{fcm_token(2)},fcm,android,,,,CA,,\n"
    )
    first = run(path, project, "--batch-size", "1")
    state = audience_state()
    second = run(path, project)
    assert (first["imported"], first["unchanged"]) == (2, 0)
    assert (second["imported"], second["updated"], second["unchanged"]) == (0, 0, 2)
    assert audience_state() == state


def test_jsonl_import(tmp_path: Path) -> None:
    project = make_project()
    make_user(project, "full", {f"k{i}": i for i in range(100)})
    path = tmp_path / "users.jsonl"
    lines = [
        {
            "external_id": "a",
            "attributes": {"country": "de", "signup": "2024-01-02T03:04:05Z", "tags": ["x"]},
            "tokens": [
                {"token": apns_token(1), "provider": "apns", "platform": "ios"},
                {
                    "token": fcm_token(1),
                    "provider": "fcm",
                    "platform": "android",
                    "app_version": "3.0",
                },
            ],
        },
        "not json",
        {"external_id": "b", "attributes": {"nested": {"no": 1}}},
        {"external_id": "c", "tokens": [{"token": apns_token(3), "provider": "apns"}]},
        {"external_id": "d", "extra": 1},
        {"attributes": {"country": "FR"}},
        {"external_id": "full", "attributes": {"one_more": 1}},
        {
            "external_id": "e",
            "tokens": [
                {"token": apns_token(5), "provider": "apns", "platform": "ios", "external_id": "x"}
            ],
        },
        {"tokens": [{"token": fcm_token(9), "provider": "fcm", "platform": "web"}]},
        {"external_id": "a", "attributes": {"country": None}},
    ]
    path.write_text(
        "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n\n"
    )
    summary = run(path, project, "--batch-size", "3")
    assert summary == {
        "lines": 10,
        "imported": 2,
        "updated": 1,
        "unchanged": 0,
        "rejected": 7,
        "rejections": {
            "invalid_attributes": {"count": 2, "lines": [3, 7]},
            "invalid_json": {"count": 1, "lines": [2]},
            "invalid_line": {"count": 2, "lines": [5, 8]},
            "invalid_platform": {"count": 1, "lines": [4]},
            "missing_external_id": {"count": 1, "lines": [6]},
        },
    }
    a = AppUser.objects.get(external_id="a")
    assert a.attributes == {
        "signup": "2024-01-02T03:04:05.000Z",
        "tags": ["x"],
        "app_version": "3.0",
    }
    assert set(PushToken.objects.values_list("token", "app_user_id")) == {
        (apns_token(1), a.id),
        (fcm_token(1), a.id),
        (fcm_token(9), None),
    }
    assert AppUser.objects.get(external_id="full").attributes == {f"k{i}": i for i in range(100)}


def test_text_summary_and_progress(tmp_path: Path) -> None:
    project = make_project()
    path = tmp_path / "t.csv"
    path.write_text(HEADER + f"u1,{apns_token(1)},apns,ios,,,,,,\nu2,x,apns,ios,,,,,,\n")
    out, err = StringIO(), StringIO()
    call_command("import_tokens", str(path), "--project", str(project.id), stdout=out, stderr=err)
    text = out.getvalue()
    assert text.startswith("2 lines in ")
    assert text.endswith(
        "1 imported, 0 updated, 0 unchanged, 1 rejected\n"
        "  rejected invalid_token_format: 1 (lines 3)\n"
    )
    assert "100.0%  2 lines" in err.getvalue()


def test_rejections_list_only_the_first_line_numbers(tmp_path: Path) -> None:
    project = make_project()
    path = tmp_path / "t.jsonl"
    path.write_text("nope\n" * 8)
    summary = run(path, project)
    assert summary["rejections"] == {"invalid_json": {"count": 8, "lines": [1, 2, 3, 4, 5]}}


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        ("external_id,colour\nu1,red\n", [], "unknown column 'colour'"),
        ("attr.n:date\n1\n", [], "type must be one of"),
        (None, [], "no such file"),
        ("", ["--batch-size", "0"], "--batch-size"),
    ],
)
def test_command_errors(tmp_path: Path, content: str | None, args: list[str], message: str) -> None:
    project = make_project()
    path = tmp_path / "f.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(CommandError, match=message):
        call_command("import_tokens", str(path), "--project", str(project.id), *args)
    assert AppUser.objects.count() == 0


def test_unknown_project_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text(HEADER)
    with pytest.raises(CommandError, match="not found"):
        call_command("import_tokens", str(path), "--project", "nope")


def test_import_keeps_other_projects_apart(tmp_path: Path) -> None:
    mine, other = make_project("mine"), make_project("other")
    foreign = make_token(other, make_user(other, "u1"), apns_token(1))
    path = tmp_path / "f.csv"
    path.write_text(HEADER + f"u1,{apns_token(1)},apns,ios,,,,,,\n")
    assert run(path, mine)["imported"] == 1
    foreign.refresh_from_db()
    assert foreign.project_id == other.id
    assert PushToken.objects.filter(project=mine).count() == 1
    assert timezone.now() >= PushToken.objects.get(project=mine).last_registered_at
