"""`manage.py seed_demo [--users N] [--json]`: a demo project wired to the simulators.

Idempotent: every user and token is derived from its index (external id, token
bytes, attributes), and rows are inserted with `ignore_conflicts`, so a re-run
adds nothing and a larger N adds only the difference. Each run still mints a
fresh API key (earlier ones stay valid) because keys are stored hashed and can
never be printed again.

It lives in the campaigns app because it creates example campaigns through
campaigns.services, and only campaigns may import every other app.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import CommandError, CommandParser
from django.db import transaction
from django.utils import timezone

from campaigns.models import PushCampaign
from campaigns.services import campaign_create
from campaigns.validation import validate_create
from core.audit import AuditedCommand
from core.models import Project
from core.services import api_key_create, project_create, project_generate_vapid, project_update
from delivery.models import Platform, Provider, PushToken
from delivery.simulators.credentials import ensure_demo_credentials
from delivery.simulators.webpush import demo_nonce, load_or_create_seed, subscription_for
from segments.models import AppUser, Segment
from segments.services import clean_segment_fields, clean_subscription, segment_create

DEMO_PROJECT_NAME = "Herald Demo"
DEMO_VAPID_SUBJECT = "mailto:demo@herald.invalid"
EXTERNAL_ID_PREFIX = "demo-user-"
CHUNK = 1000
PROGRESS_FROM = 2000  # print progress lines (stderr) from this many users up

# (country, language, timezone, weight): several French, German, Spanish and
# Brazilian users so localized campaigns and segments have an audience.
LOCALES: tuple[tuple[str, str, str, int], ...] = (
    ("US", "en", "America/New_York", 14),
    ("US", "en", "America/Los_Angeles", 8),
    ("GB", "en", "Europe/London", 8),
    ("IN", "en", "Asia/Kolkata", 6),
    ("AU", "en", "Australia/Sydney", 3),
    ("FR", "fr", "Europe/Paris", 12),
    ("CA", "fr", "America/Toronto", 3),
    ("DE", "de", "Europe/Berlin", 9),
    ("AT", "de", "Europe/Vienna", 2),
    ("ES", "es", "Europe/Madrid", 6),
    ("MX", "es", "America/Mexico_City", 5),
    ("BR", "pt-BR", "America/Sao_Paulo", 8),
    ("JP", "ja", "Asia/Tokyo", 4),
)
LOCALE_WEIGHTS = [weight for *_, weight in LOCALES]
APP_VERSIONS = ("3.2.0", "3.3.1", "3.4.0", "3.4.2", "3.5.0")

SEGMENTS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    (
        "French speakers",
        "Users whose app language is French.",
        {"all": [{"attr": "language", "op": "eq", "value": "fr"}]},
    ),
    (
        "Pro plan",
        "Paying users.",
        {"all": [{"attr": "plan", "op": "eq", "value": "pro"}]},
    ),
)
PRO_SEGMENT = "Pro plan"
FIRST_NAMES = (
    "Ada",
    "Grace",
    "Linus",
    "Margaret",
    "Alan",
    "Hedy",
    "Ken",
    "Barbara",
    "Tim",
    "Sofia",
)


def _campaign_payloads(pro_segment: Segment) -> list[dict[str, Any]]:
    """Two drafts showing localizations, deep links, buttons and a segment."""
    return [
        {
            "name": "Welcome tour",
            "title": "Welcome to Herald Demo",
            # A placeholder: each user gets their own first name (or "there").
            "body": 'Hi {{ first_name | default: "there" }}, take the two-minute tour and '
            "set up your first project.",
            "data": {"screen": "tour"},
            "url": "herald-demo://tour",
            # Buttons, so the simulated devices' clicks (run_stack's device behaviour:
            # push_clicked needs an action id) show on this campaign too.
            "actions": [
                {"id": "start", "title": "Start the tour", "url": "herald-demo://tour/start"},
                {"id": "later", "title": "Later"},
            ],
            "localizations": {
                "fr": {"title": "Bienvenue sur Herald Demo", "body": "Suivez la visite guidée."},
                "de": {"title": "Willkommen bei Herald Demo", "body": "Starten Sie die Tour."},
                "es": {"title": "Bienvenido a Herald Demo", "body": "Haz el recorrido."},
                "pt-BR": {"title": "Bem-vindo ao Herald Demo", "body": "Faça o tour."},
            },
            "tags": ["demo", "onboarding"],
            # What the tour is for: the simulated devices report this event for a share
            # of the pushes they open (run_stack's device behaviour), so the campaign
            # page shows conversions as well as opens and clicks.
            "goals": [
                {
                    "name": "Purchase",
                    "event": settings.HERALD_DEMO_GOAL_EVENT,
                    "filter": {"attr": "value", "op": "gt", "value": 0},
                    "window_hours": 36,
                    "primary": True,
                }
            ],
        },
        {
            "name": "Pro feature launch",
            "title": "New for Pro: scheduled exports",
            "body": "Export your reports every Monday, automatically.",
            "segment_id": str(pro_segment.id),
            "url": "herald-demo://exports",
            "actions": [
                {"id": "try", "title": "Try it", "url": "herald-demo://exports/new"},
                {"id": "later", "title": "Later"},
            ],
            "priority": "normal",
            "tags": ["demo", "pro"],
        },
    ]


def external_id(index: int) -> str:
    return f"{EXTERNAL_ID_PREFIX}{index:04d}"


def apns_token(index: int) -> str:
    """64 lowercase hex characters, like a real APNs device token, stable per index."""
    return hashlib.sha256(f"herald-demo-apns-{index}".encode()).hexdigest()


def fcm_token(index: int, kind: str = "android") -> str:
    """An FCM registration token shaped like real ones (~150 characters):
    `<22-char instance id>:APA91b<base64url>`, stable per index and kind."""
    seed = f"herald-demo-fcm-{kind}-{index}".encode()
    instance_id = base64.urlsafe_b64encode(hashlib.sha256(seed).digest()[:16]).decode()
    body = base64.urlsafe_b64encode(hashlib.shake_256(seed).digest(90)).decode()
    return f"{instance_id.rstrip('=')}:APA91b{body.rstrip('=')}"


@dataclass(frozen=True)
class DemoDevice:
    provider: str
    platform: str
    token: str
    keys: dict[str, str] | None = None  # web push: {"p256dh", "auth"}


# A browser subscribing: the subscription (PushSubscription.toJSON()) for a label.
Subscribe = Callable[[str], dict[str, Any]]


def demo_attributes(index: int) -> dict[str, Any]:
    """Deterministic per index (string seeds hash the same in every process)."""
    rng = random.Random(f"herald-demo-user-{index}")
    country, language, tz, _ = rng.choices(LOCALES, weights=LOCALE_WEIGHTS)[0]
    return {
        "country": country,
        "language": language,
        "timezone": tz,
        "app_version": rng.choice(APP_VERSIONS),
        "plan": "pro" if rng.random() < 0.25 else "free",
        # Most users open the app a few times, a few are heavy users.
        "sessions": rng.randint(0, 20) if rng.random() < 0.7 else rng.randint(21, 800),
        "beta": rng.random() < 0.1,
        # Most users told the app their first name; the rest get the default.
        **({"first_name": rng.choice(FIRST_NAMES)} if rng.random() < 0.8 else {}),
    }


def demo_devices(index: int, subscribe: Subscribe | None = None) -> list[DemoDevice]:
    """Half iOS (APNs), half Android (FCM); every 20th user also has the other
    platform, every 25th also subscribed on the web through FCM, and every 10th
    (with ``subscribe``, the web push simulator's subscriptions) in a browser
    through standard web push."""
    ios = DemoDevice(Provider.APNS, Platform.IOS, apns_token(index))
    android = DemoDevice(Provider.FCM, Platform.ANDROID, fcm_token(index))
    devices = [ios] if index % 2 else [android]
    if index % 20 == 0:
        devices.append(ios)
    elif index % 20 == 11:
        devices.append(android)
    if index % 25 == 3:
        devices.append(DemoDevice(Provider.FCM, Platform.WEB, fcm_token(index, "web")))
    if subscribe is not None and index % 10 == 5:
        endpoint, keys = clean_subscription(subscribe(external_id(index)))
        devices.append(DemoDevice(Provider.WEBPUSH, Platform.WEB, endpoint, keys))
    return devices


def simulator_subscriptions() -> Subscribe:
    """Subscriptions of the local web push simulator, stable per label: derived from
    the simulator's seed (in HERALD_SIMULATOR_DIR, made on first use), which is also
    how the simulator recognises them and decrypts what is sent to them."""
    seed = load_or_create_seed(settings.HERALD_SIMULATOR_DIR)
    base_url = f"https://{settings.HERALD_SIMULATOR_HOST}:{settings.HERALD_SIMULATOR_WEBPUSH_PORT}"
    return lambda label: subscription_for(seed, base_url, demo_nonce(label))


def _chunks(start: int, stop: int) -> Iterator[range]:
    for first in range(start, stop, CHUNK):
        yield range(first, min(first + CHUNK, stop))


class Command(AuditedCommand):
    help = (
        "Create or top up the 'Herald Demo' project (simulator credentials, users, "
        "tokens, segments, draft campaigns) and print a fresh API key."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--users", type=int, default=200, help="Demo users (default 200).")
        parser.add_argument(
            "--json",
            action="store_true",
            help='Print one JSON object {"project_id", "api_key", "users", "tokens"}.',
        )

    def handle(self, *args: Any, **options: Any) -> None:
        wanted: int = options["users"]
        if wanted < 0:
            raise CommandError("--users must be 0 or more.")
        with transaction.atomic():
            project = self._project()
            self._point_at_simulators(project)
            users_before = AppUser.objects.filter(project=project).count()
            tokens_before = PushToken.objects.filter(project=project).count()
            self._seed_users(project, wanted)
            self._seed_examples(project)
            stamp = timezone.now().strftime("%Y-%m-%dT%H:%M:%SZ")
            _, full_key = api_key_create(project=project, name=f"demo key {stamp}")
            users = AppUser.objects.filter(project=project).count()
            tokens = PushToken.objects.filter(project=project).count()
        if options["json"]:
            summary = {
                "project_id": str(project.id),
                "api_key": full_key,
                "users": users,
                "tokens": tokens,
            }
            self.stdout.write(json.dumps(summary))
            return
        host = settings.HERALD_SIMULATOR_HOST
        self.stdout.write(f'Demo project "{project.name}" is ready.')
        self.stdout.write(f"Project id: {project.id}")
        self.stdout.write(f"API key:    {full_key}")
        self.stdout.write(f"Users:      {users} ({users - users_before} new)")
        self.stdout.write(f"Tokens:     {tokens} ({tokens - tokens_before} new)")
        self.stdout.write(
            f"Providers:  APNs {host}:{settings.HERALD_SIMULATOR_APNS_PORT}, "
            f"FCM https://{host}:{settings.HERALD_SIMULATOR_FCM_PORT}, web push "
            f"https://{host}:{settings.HERALD_SIMULATOR_WEBPUSH_PORT} (the local simulators)"
        )
        self.stdout.write("A new key is made on every run; earlier demo keys stay valid.")

    def _project(self) -> Project:
        existing = Project.objects.filter(name=DEMO_PROJECT_NAME).order_by("created_at").first()
        return existing or project_create(name=DEMO_PROJECT_NAME)

    def _point_at_simulators(self, project: Project) -> None:
        host = settings.HERALD_SIMULATOR_HOST
        fcm_base_url = f"https://{host}:{settings.HERALD_SIMULATOR_FCM_PORT}"
        creds = ensure_demo_credentials(settings.HERALD_SIMULATOR_DIR, fcm_base_url=fcm_base_url)
        project_update(
            project=project,
            fields={
                "apns_team_id": creds.team_id,
                "apns_key_id": creds.key_id,
                "apns_auth_key": creds.auth_key_pem,
                "apns_topic": creds.topic,
                "apns_endpoint": f"{host}:{settings.HERALD_SIMULATOR_APNS_PORT}",
                "apns_ca_file": str(creds.ca_file),
                "apns_use_sandbox": False,
                "fcm_service_account": creds.service_account_info,
                "fcm_endpoint": fcm_base_url,
                "fcm_ca_file": str(creds.ca_file),
                "webpush_ca_file": str(creds.ca_file),
            },
        )
        if not project.webpush_vapid_private_key:  # generated once: rotating would
            # break the browsers' subscriptions (real ones; the simulator's do not care)
            project_generate_vapid(project=project, subject=DEMO_VAPID_SUBJECT)

    def _seed_users(self, project: Project, wanted: int) -> None:
        """Insert users 1..wanted and their tokens in chunks; existing rows are kept."""
        now = timezone.now()
        show_progress = wanted >= PROGRESS_FROM
        subscribe = simulator_subscriptions()
        for indexes in _chunks(1, wanted + 1):
            users = []
            for index in indexes:
                rng = random.Random(f"herald-demo-seen-{index}")
                users.append(
                    AppUser(
                        project=project,
                        external_id=external_id(index),
                        attributes=demo_attributes(index),
                        last_seen_at=now - timedelta(minutes=rng.randint(1, 60 * 24 * 30)),
                    )
                )
            AppUser.objects.bulk_create(users, ignore_conflicts=True)
            # ignore_conflicts leaves pks unset: read back the ids of the whole chunk.
            ids = dict(
                AppUser.objects.filter(
                    project=project, external_id__in=[u.external_id for u in users]
                ).values_list("external_id", "id")
            )
            tokens = []
            for index, user in zip(indexes, users, strict=True):
                attributes = user.attributes
                for device in demo_devices(index, subscribe):
                    tokens.append(
                        PushToken(
                            project=project,
                            app_user_id=ids[user.external_id],
                            token=device.token,
                            provider=device.provider,
                            platform=device.platform,
                            locale=attributes["language"],
                            timezone=attributes["timezone"],
                            app_version=attributes["app_version"],
                            keys=device.keys,
                        )
                    )
            PushToken.objects.bulk_create(tokens, ignore_conflicts=True)
            if show_progress:
                self.stderr.write(f"  users {indexes[-1]}/{wanted}")

    def _seed_examples(self, project: Project) -> None:
        """Example segments and drafts, created only when absent by name."""
        segments = {s.name: s for s in Segment.objects.filter(project=project)}
        for name, description, rules in SEGMENTS:
            if name not in segments:  # written like the API writes it: validated first
                body = {"name": name, "description": description, "rules": rules}
                fields = clean_segment_fields(body, partial=False)
                segments[name] = segment_create(project=project, fields=fields)
        existing = set(PushCampaign.objects.filter(project=project).values_list("name", flat=True))
        for payload in _campaign_payloads(segments[PRO_SEGMENT]):
            if payload["name"] not in existing:
                campaign_create(project=project, fields=validate_create(payload))
