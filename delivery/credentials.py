"""Project credentials -> provider configs (the only place that hands the secrets to
a sender).

Whether a project's credentials are valid and complete is core.credentials' call,
the same one the console shows; a project that lacks something fails with what it
lacks. The private keys are stored encrypted (core/secrets.py); this module is the
only caller of `Sealed.reveal()`. A secret no configured key opens fails like a
missing one, with a message that names the key setting, never the secret.
Decrypting costs ~16-25 us per secret (measured: a .p8 / a 2048-bit RSA key) and
configs are built once per claimed batch (up to HERALD_SEND_CHUNK_SIZE rows), so
nothing is cached (docs/decisions.md).
"""

from __future__ import annotations

from django.conf import settings

from core.credentials import apns_missing, fcm_missing, webpush_missing
from core.fields import reveal_service_account
from core.models import Project
from core.secrets import SecretsKeyMissing, SecretUnreadable
from delivery.models import Provider
from delivery.providers.base import ApnsConfig, FcmConfig, WebPushConfig


class MissingCredentials(Exception):
    """The project has no usable credentials for a provider it must send to."""


def apns_config(project: Project) -> ApnsConfig:
    missing = apns_missing(project)
    if missing:
        raise MissingCredentials(
            f"APNs credentials are not configured for this project (missing {'; '.join(missing)})."
        )
    try:
        token_auth = bool(project.apns_auth_key)
        return ApnsConfig(
            topic=project.apns_topic,
            team_id=project.apns_team_id if token_auth else "",
            key_id=project.apns_key_id if token_auth else "",
            auth_key_pem=project.apns_auth_key.reveal() if token_auth else "",
            client_cert_pem="" if token_auth else project.apns_certificate.reveal(),
            use_sandbox=project.apns_use_sandbox,
            endpoint=project.apns_endpoint,
            ca_file=project.apns_ca_file,
            concurrency=settings.HERALD_APNS_CONCURRENCY,
            timeout_seconds=settings.HERALD_PROVIDER_TIMEOUT_SECONDS,
        )
    except (SecretUnreadable, SecretsKeyMissing) as exc:
        raise MissingCredentials(f"APNs credentials are unreadable: {exc}") from exc
    except ValueError as exc:
        raise MissingCredentials(f"APNs credentials are invalid: {exc}") from exc


def fcm_config(project: Project) -> FcmConfig:
    missing = fcm_missing(project)
    if missing:
        raise MissingCredentials(
            f"FCM credentials are not configured for this project (missing {'; '.join(missing)})."
        )
    try:
        return FcmConfig(
            service_account_info=reveal_service_account(project.fcm_service_account),
            endpoint=project.fcm_endpoint,
            ca_file=project.fcm_ca_file,
            concurrency=settings.HERALD_FCM_CONCURRENCY,
            timeout_seconds=settings.HERALD_PROVIDER_TIMEOUT_SECONDS,
        )
    except (SecretUnreadable, SecretsKeyMissing) as exc:
        raise MissingCredentials(f"FCM credentials are unreadable: {exc}") from exc
    except ValueError as exc:
        raise MissingCredentials(f"FCM credentials are invalid: {exc}") from exc


def webpush_config(project: Project) -> WebPushConfig:
    missing = webpush_missing(project)
    if missing:
        raise MissingCredentials(
            "Web push credentials are not configured for this project "
            f"(missing {'; '.join(missing)})."
        )
    try:
        private_key = project.webpush_vapid_private_key.reveal()
    except (SecretUnreadable, SecretsKeyMissing) as exc:
        raise MissingCredentials(f"Web push credentials are unreadable: {exc}") from exc
    return WebPushConfig(
        vapid_private_key=private_key,
        vapid_public_key=project.webpush_vapid_public_key,
        subject=project.webpush_vapid_subject,
        ca_file=project.webpush_ca_file,
        timeout_seconds=settings.HERALD_PROVIDER_TIMEOUT_SECONDS,
    )


def provider_config(project: Project, provider: str) -> ApnsConfig | FcmConfig | WebPushConfig:
    if provider == Provider.WEBPUSH:
        return webpush_config(project)
    return apns_config(project) if provider == Provider.APNS else fcm_config(project)
