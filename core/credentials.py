"""Project credentials: whether they are valid, and whether they are complete.

The one owner of the rules for a project's APNs, FCM and web push (VAPID) secrets. Every door calls
it: the admin's project form (to show a refusal next to the field),
`core.services.project_update` (the only writer of projects, so `seed_demo`,
`create_project` and the admin all store only what passes), `Project.has_*_credentials`
and the console's status column, and `delivery.credentials` when it builds a
provider config. Messages say what to fix and never echo a secret.

Two questions, two kinds of function:
- `clean_*`: is this pasted value well-formed? Raises InvalidCredentials (400
  INVALID_CREDENTIALS, details name the project field) or returns the value to store.
- `apns_missing` / `fcm_missing` / `webpush_missing`: what does a project still lack
  before it can send?
  An empty list means complete. Saving a partial configuration is allowed (an
  operator may paste the key now and the topic later); sending is not.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from core.errors import InvalidInput

if TYPE_CHECKING:
    from core.models import Project

# What a Firebase service-account file must hold for Herald to mint OAuth tokens.
FCM_REQUIRED_KEYS = ("type", "project_id", "private_key", "client_email", "token_uri")
APNS_AUTH_NEEDED = "team id + key id + .p8 key, or a certificate"


class InvalidCredentials(InvalidInput):
    code = "INVALID_CREDENTIALS"


def _invalid(field: str, message: str) -> InvalidCredentials:
    return InvalidCredentials(message, details={"field": field})


def clean_apns_auth_key(text: str) -> str:
    """An APNs token-auth key: the whole .p8 file, an EC (P-256) private key in PEM."""
    text = text.strip()
    try:
        key = serialization.load_pem_private_key(text.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise _invalid(
            "apns_auth_key",
            "Not a PEM private key: paste the whole .p8 file, BEGIN/END lines included.",
        ) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise _invalid("apns_auth_key", "An APNs .p8 key is an EC (P-256) private key.")
    return text + "\n"


def clean_apns_certificate(text: str) -> str:
    """An APNs client certificate: the certificate and its private key, PEM."""
    text = text.strip()
    try:
        x509.load_pem_x509_certificate(text.encode())
    except ValueError as exc:
        raise _invalid("apns_certificate", "No PEM certificate found.") from exc
    if "PRIVATE KEY-----" not in text:
        raise _invalid("apns_certificate", "Paste the certificate's private key after it (PEM).")
    return text + "\n"


def parse_fcm_service_account(text: str) -> dict[str, Any]:
    """The service-account JSON file as pasted or read from disk, cleaned."""
    try:
        info = json.loads(text)
    except ValueError as exc:
        raise _invalid("fcm_service_account", "Not valid JSON.") from exc
    return clean_fcm_service_account(info)


def clean_fcm_service_account(info: Any) -> dict[str, Any]:
    """A Firebase service account: the keys Herald needs, an RSA private key."""
    if not isinstance(info, Mapping):
        raise _invalid("fcm_service_account", "The service account must be a JSON object.")
    missing = [key for key in FCM_REQUIRED_KEYS if not info.get(key)]
    if missing:
        raise _invalid("fcm_service_account", f"Missing keys: {', '.join(missing)}.")
    if info["type"] != "service_account":
        raise _invalid("fcm_service_account", '"type" must be "service_account".')
    try:
        key = serialization.load_pem_private_key(str(info["private_key"]).encode(), None)
    except (ValueError, TypeError) as exc:
        raise _invalid("fcm_service_account", '"private_key" is not a PEM private key.') from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise _invalid("fcm_service_account", '"private_key" must be an RSA key.')
    return dict(info)


# ------------------------------------------------------------------ web push (VAPID)

VAPID_SUBJECT_MAX = 200
VAPID_PUBLIC_KEY_BYTES = 65  # uncompressed P-256 point: 0x04 || X || Y


def b64url_decode(text: str) -> bytes:
    """base64url with or without padding (browsers omit it); ValueError if it is not."""
    if not text or any(c not in _B64URL for c in text) or len(text) % 4 == 1:
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as exc:
        raise ValueError("not base64url") from exc


def b64url_encode(data: bytes) -> str:
    """Unpadded base64url, the form browsers and the Push API use."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def p256_public_point(text: str) -> bytes | None:
    """The 65 bytes of an uncompressed P-256 point ON the curve, or None.

    Used for VAPID public keys and subscriptions' p256dh alike: a point off the
    curve would only fail later, inside the sender's ECDH.
    """
    try:
        raw = b64url_decode(text)
    except ValueError:
        return None
    if len(raw) != VAPID_PUBLIC_KEY_BYTES or raw[0] != 0x04:
        return None
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    except ValueError:
        return None
    return raw


def clean_vapid_subject(value: Any) -> str:
    """The VAPID `sub` claim: a mailto: or https: URL push services may contact."""
    if not isinstance(value, str) or not value.strip():
        raise _invalid("webpush_vapid_subject", "subject is required (mailto: or https: URL).")
    value = value.strip()
    if len(value) > VAPID_SUBJECT_MAX:
        raise _invalid(
            "webpush_vapid_subject", f"subject is limited to {VAPID_SUBJECT_MAX} characters."
        )
    if any(c.isspace() or ord(c) < 0x20 for c in value):
        raise _invalid("webpush_vapid_subject", "subject must not contain spaces.")
    lowered = value.lower()
    if lowered.startswith("mailto:") and "@" in value[len("mailto:") :]:
        return value
    if lowered.startswith("https://") and len(value) > len("https://"):
        return value
    raise _invalid(
        "webpush_vapid_subject",
        "subject must be a mailto: address or an https: URL (RFC 8292).",
    )


def clean_vapid_private_key(text: str) -> str:
    """A VAPID private key: an EC P-256 private key in PEM."""
    text = text.strip()
    try:
        key = serialization.load_pem_private_key(text.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise _invalid("webpush_vapid_private_key", "Not a PEM private key.") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise _invalid("webpush_vapid_private_key", "A VAPID key is an EC P-256 private key.")
    return text + "\n"


def clean_vapid_public_key(text: str) -> str:
    if p256_public_point(text) is None:
        raise _invalid(
            "webpush_vapid_public_key",
            "A VAPID public key is the base64url of a 65-byte uncompressed P-256 point.",
        )
    return text


def vapid_public_key_of(private_key_pem: str) -> str:
    """The base64url uncompressed point of a PEM P-256 private key."""
    key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    point = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return b64url_encode(point)


def generate_vapid_key_pair() -> tuple[str, str]:
    """(private key PEM, public key base64url) of a fresh P-256 key pair."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return pem, vapid_public_key_of(pem)


_CLEANERS = {
    "apns_auth_key": clean_apns_auth_key,
    "apns_certificate": clean_apns_certificate,
    "fcm_service_account": clean_fcm_service_account,
    "webpush_vapid_private_key": clean_vapid_private_key,
    "webpush_vapid_public_key": clean_vapid_public_key,
    "webpush_vapid_subject": clean_vapid_subject,
}


def clean_credential_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """`fields` with every secret it sets cleaned; an empty value removes the secret."""
    cleaned = dict(fields)
    for name, clean in _CLEANERS.items():
        if cleaned.get(name):
            cleaned[name] = clean(cleaned[name])
    return cleaned


def apns_missing(project: Project) -> list[str]:
    """What the project lacks before it can send to APNs; [] when complete."""
    missing = []
    if not project.apns_topic:
        missing.append("topic")
    has_token_auth = bool(project.apns_team_id and project.apns_key_id and project.apns_auth_key)
    if not (has_token_auth or project.apns_certificate):
        missing.append(APNS_AUTH_NEEDED)
    return missing


def fcm_missing(project: Project) -> list[str]:
    """What the project lacks before it can send to FCM; [] when complete."""
    info = project.fcm_service_account or {}
    if not info:
        return ["service account JSON"]
    # "type" is checked when a file is pasted; sending needs the other keys.
    absent = [key for key in FCM_REQUIRED_KEYS if key != "type" and not info.get(key)]
    return [f"service account keys: {', '.join(absent)}"] if absent else []


def webpush_missing(project: Project) -> list[str]:
    """What the project lacks before it can send web push; [] when complete."""
    missing = []
    if not (project.webpush_vapid_private_key and project.webpush_vapid_public_key):
        missing.append("VAPID key pair")
    if not project.webpush_vapid_subject:
        missing.append("VAPID subject (mailto: or https:)")
    return missing


def apns_status(project: Project) -> str:
    """One line for the console: configured (how) or missing (what)."""
    missing = apns_missing(project)
    if missing:
        return f"missing ({'; '.join(missing)})"
    auth = "token auth" if project.apns_auth_key else "certificate"
    environment = "sandbox" if project.apns_use_sandbox else "production"
    return f"configured ({auth}, {environment})"


def fcm_status(project: Project) -> str:
    missing = fcm_missing(project)
    if missing:
        return f"missing ({'; '.join(missing)})"
    return f"configured (project {project.fcm_service_account['project_id']})"


def webpush_status(project: Project) -> str:
    missing = webpush_missing(project)
    if missing:
        return f"missing ({'; '.join(missing)})"
    return f"configured (VAPID, subject {project.webpush_vapid_subject})"
