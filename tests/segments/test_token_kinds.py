"""app_users.active_token_kinds (PostgreSQL): every writer of push_tokens keeps it right.

The column is what the platform/provider rule conditions read, so a stale value is a
wrong audience. Each test drives one real writer and asserts exact bit sets, and that
the column equals a fresh recomputation from push_tokens for every user.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.contrib.admin.sites import site
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import RequestFactory
from django.utils import timezone

from delivery.admin import PushTokenAdmin
from delivery.models import PushToken
from segments.models import AppUser
from segments.rules import ANY_TOKEN_BIT, TOKEN_KIND_BITS
from segments.services import TokenRegistration, token_register, token_unregister
from segments.token_import import import_file
from tests.segments.helpers import apns_token, fcm_token, make_project, make_token, make_user

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="the column and its triggers are PostgreSQL's"
    ),
]

IOS = ANY_TOKEN_BIT | TOKEN_KIND_BITS["platform"]["ios"] | TOKEN_KIND_BITS["provider"]["apns"]
ANDROID = (
    ANY_TOKEN_BIT | TOKEN_KIND_BITS["platform"]["android"] | TOKEN_KIND_BITS["provider"]["fcm"]
)
WEB = ANY_TOKEN_BIT | TOKEN_KIND_BITS["platform"]["web"] | TOKEN_KIND_BITS["provider"]["fcm"]
RECOMPUTED = (
    "SELECT u.external_id FROM app_users u WHERE u.active_token_kinds <> COALESCE(("
    "SELECT bit_or(herald_token_kind(t.platform, t.provider)) FROM push_tokens t "
    "WHERE t.app_user_id = u.id AND t.active), 0)"
)


def kinds(user: AppUser) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT active_token_kinds FROM app_users WHERE id = %s", [user.pk])
        row = cursor.fetchone()
    assert row is not None
    return int(row[0])


def stale_users() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(RECOMPUTED)
        return sorted(row[0] for row in cursor.fetchall())


def register(project: Any, token: str, **fields: Any) -> PushToken:
    fields.setdefault("provider", "apns")
    fields.setdefault("platform", "ios")
    row, _ = token_register(project=project, registration=TokenRegistration(token=token, **fields))
    return row


def test_bits_agree_with_the_database_function() -> None:
    with connection.cursor() as cursor:
        for platform, bit in TOKEN_KIND_BITS["platform"].items():
            for provider, provider_bit in TOKEN_KIND_BITS["provider"].items():
                cursor.execute("SELECT herald_token_kind(%s, %s)", [platform, provider])
                assert cursor.fetchone() == (ANY_TOKEN_BIT | bit | provider_bit,)
        cursor.execute("SELECT herald_token_kind('other', 'other')")
        assert cursor.fetchone() == (ANY_TOKEN_BIT,)


def test_registration_sets_moves_and_detaches() -> None:
    project = make_project()
    register(project, apns_token(1), external_id="a")
    a = AppUser.objects.get(external_id="a")
    assert kinds(a) == IOS
    register(project, fcm_token(1), provider="fcm", platform="web", external_id="a")
    assert kinds(a) == IOS | WEB
    # The same token re-registered for b moves: a keeps only its web token.
    register(project, apns_token(1), external_id="b")
    b = AppUser.objects.get(external_id="b")
    assert (kinds(a), kinds(b)) == (WEB, IOS)
    # Same token and provider, platform changed by the app.
    register(project, fcm_token(1), provider="fcm", platform="android")
    assert kinds(a) == ANDROID
    register(project, fcm_token(1), provider="fcm", platform="android", external_id=None)
    assert kinds(a) == 0
    assert stale_users() == []


def test_unregister_and_reregister() -> None:
    project = make_project()
    register(project, apns_token(2), external_id="a")
    a = AppUser.objects.get(external_id="a")
    token_unregister(project=project, token=apns_token(2))
    assert kinds(a) == 0
    register(project, apns_token(2))  # keeps its owner, reactivated
    assert kinds(a) == IOS


def test_bulk_deactivation_as_fan_out_records_it() -> None:
    """The statement delivery.services._write and delivery_send_one run."""
    project = make_project()
    a, b = make_user(project, "a"), make_user(project, "b")
    t1 = make_token(project, a, apns_token(1))
    t2 = make_token(project, a, fcm_token(2), provider="fcm", platform="android")
    t3 = make_token(project, b, apns_token(3))
    assert (kinds(a), kinds(b)) == (IOS | ANDROID, IOS)
    changed = PushToken.objects.filter(id__in=[t1.pk, t3.pk], active=True).update(
        active=False, invalidated_at=timezone.now(), invalid_reason="Unregistered"
    )
    assert changed == 2
    assert (kinds(a), kinds(b)) == (ANDROID, 0)
    PushToken.objects.filter(pk=t2.pk).update(active=False)
    assert kinds(a) == 0
    assert stale_users() == []


def test_admin_actions() -> None:
    project = make_project()
    a = make_user(project, "a")
    make_token(project, a, apns_token(1))
    admin = PushTokenAdmin(PushToken, site)
    admin.message_user = lambda *args, **kwargs: None  # type: ignore[method-assign]
    request = RequestFactory().post("/")
    request.user = get_user_model()(username="root", is_superuser=True, is_active=True)
    admin.deactivate_tokens(request, PushToken.objects.filter(project=project))
    assert kinds(a) == 0
    admin.reactivate_tokens(request, PushToken.objects.filter(project=project))
    assert kinds(a) == IOS


def test_insert_delete_and_user_deletion() -> None:
    project = make_project()
    a, b = make_user(project, "a"), make_user(project, "b")
    PushToken.objects.bulk_create(
        [
            PushToken(
                project=project, app_user=a, token=apns_token(1), provider="apns", platform="ios"
            ),
            PushToken(
                project=project, app_user=b, token=fcm_token(1), provider="fcm", platform="web"
            ),
            PushToken(
                project=project,
                app_user=b,
                token=fcm_token(2),
                provider="fcm",
                platform="android",
                active=False,
            ),
        ]
    )
    assert (kinds(a), kinds(b)) == (IOS, WEB)
    PushToken.objects.filter(token=fcm_token(1)).delete()
    assert kinds(b) == 0
    a.delete()  # SET NULL on its tokens: the UPDATE fires, the user row then goes
    assert PushToken.objects.get(token=apns_token(1)).app_user_id is None
    assert stale_users() == []


def test_unrelated_token_updates_leave_users_untouched() -> None:
    """A refresh that changes no kind writes no user row (no lock, no dead tuple)."""
    project = make_project()
    a = make_user(project, "a")
    make_token(project, a, apns_token(1))
    with connection.cursor() as cursor:
        cursor.execute("SELECT xmin::text FROM app_users WHERE id = %s", [a.pk])
        before = cursor.fetchone()
        PushToken.objects.filter(app_user=a).update(
            last_registered_at=timezone.now(), app_version="9.9"
        )
        cursor.execute("SELECT xmin::text FROM app_users WHERE id = %s", [a.pk])
        assert cursor.fetchone() == before


def test_full_user_save_does_not_clobber_the_column() -> None:
    project = make_project()
    a = make_user(project, "a")
    stale = AppUser.objects.get(pk=a.pk)  # loaded before the token exists
    make_token(project, a, apns_token(1))
    stale.attributes = {"country": "FR"}
    stale.save()
    assert kinds(a) == IOS


def test_import_writes_and_moves(tmp_path: Path) -> None:
    project = make_project()
    path = tmp_path / "users.jsonl"
    lines = [
        {
            "external_id": "a",
            "tokens": [{"token": apns_token(1), "provider": "apns", "platform": "ios"}],
        },
        {
            "external_id": "b",
            "tokens": [{"token": fcm_token(1), "provider": "fcm", "platform": "android"}],
        },
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    summary = import_file(project=project, path=path, file_format="jsonl")
    assert summary.rejected == 0
    a, b = AppUser.objects.get(external_id="a"), AppUser.objects.get(external_id="b")
    assert (kinds(a), kinds(b)) == (IOS, ANDROID)
    PushToken.objects.filter(token=apns_token(1)).update(active=False)
    moved = [
        {
            "external_id": "b",
            "tokens": [{"token": apns_token(1), "provider": "apns", "platform": "ios"}],
        }
    ]
    path.write_text(json.dumps(moved[0]) + "\n")
    import_file(project=project, path=path, file_format="jsonl")  # reactivates, moves to b
    assert (kinds(a), kinds(b)) == (0, IOS | ANDROID)
    assert stale_users() == []


def test_truncate_clears_every_user() -> None:
    project = make_project()
    a = make_user(project, "a")
    make_token(project, a, apns_token(1))
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no pending FK checks
        cursor.execute("TRUNCATE push_tokens CASCADE")
    assert kinds(a) == 0


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_to_one_user_leave_it_right() -> None:
    """Two transactions each deactivate one of a user's two tokens. The second one's
    trigger waits for the first's lock on the user, then recomputes with a snapshot
    that sees the first's committed change: the user ends with no kinds, not with the
    other's token still counted."""
    project = make_project()
    a = make_user(project, "a")
    t1 = make_token(project, a, apns_token(1))
    t2 = make_token(project, a, fcm_token(2), provider="fcm", platform="android")
    settings = connection.settings_dict
    dsn = f"host={settings['HOST']} port={settings['PORT'] or 5432} dbname={settings['NAME']}"
    dsn += f" user={settings['USER']}"
    if settings.get("PASSWORD"):
        dsn += f" password={settings['PASSWORD']}"
    first, second = psycopg.connect(dsn), psycopg.connect(dsn)
    try:
        first.execute("UPDATE push_tokens SET active = false WHERE id = %s", [t1.pk])
        done = threading.Event()

        def deactivate_other() -> None:
            second.execute("UPDATE push_tokens SET active = false WHERE id = %s", [t2.pk])
            second.commit()
            done.set()

        worker = threading.Thread(target=deactivate_other)
        worker.start()
        assert not done.wait(0.5)  # blocked on the user row the first trigger locked
        first.commit()
        worker.join(10)
        assert done.is_set()
    finally:
        first.close()
        second.close()
    assert kinds(a) == 0
    assert stale_users() == []
