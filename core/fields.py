"""Model fields that keep provider credentials encrypted at rest (core/secrets.py).

Assigning plaintext (`project.apns_auth_key = pem`, `Project.objects.create(...)`,
`project_update`) seals it at once; loading a row gives a `Sealed` without
decrypting. The database, `dumpdata` and anything that prints a project see only
Fernet tokens or `<sealed>`. For the FCM service account only `private_key` is
sealed: project_id, client_email and token_uri stay readable for the console's
status line and the "what is missing" checks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db import models
from django.db.models.query_utils import DeferredAttribute

from core.secrets import Sealed, looks_sealed

SEALED_JSON_KEY = "private_key"


def to_sealed(value: Any) -> Sealed:
    """Plaintext (or None) -> a freshly sealed value; a Sealed stays as it is."""
    if isinstance(value, Sealed):
        return value
    return Sealed.seal(value or "")


def seal_service_account(value: Any) -> Any:
    """A service-account dict with its private key sealed (other values unchanged)."""
    if not isinstance(value, Mapping) or SEALED_JSON_KEY not in value:
        return value
    info = dict(value)
    info[SEALED_JSON_KEY] = to_sealed(info[SEALED_JSON_KEY])
    return info


def reveal_service_account(value: Mapping[str, Any]) -> dict[str, Any]:
    """The plaintext service account, for building an FCM sender only."""
    info = dict(value)
    key = info.get(SEALED_JSON_KEY)
    if isinstance(key, Sealed):
        info[SEALED_JSON_KEY] = key.reveal()
    return info


def _stored_service_account(value: Any) -> Any:
    """What goes into the JSON column: the private key as its token."""
    if not isinstance(value, Mapping) or SEALED_JSON_KEY not in value:
        return value
    info = dict(value)
    info[SEALED_JSON_KEY] = to_sealed(info[SEALED_JSON_KEY]).token
    return info


def _loaded_service_account(value: Any) -> Any:
    if isinstance(value, dict) and isinstance(value.get(SEALED_JSON_KEY), str):
        value[SEALED_JSON_KEY] = Sealed(value[SEALED_JSON_KEY])
    return value


class _SealingText(DeferredAttribute):
    def __set__(self, instance: models.Model, value: Any) -> None:
        instance.__dict__[self.field.attname] = to_sealed(value)


class _SealingServiceAccount(DeferredAttribute):
    def __set__(self, instance: models.Model, value: Any) -> None:
        instance.__dict__[self.field.attname] = seal_service_account(value)


class SealedTextField(models.TextField):
    """A TextField whose value is a `Sealed` in Python and a Fernet token in SQL."""

    descriptor_class = _SealingText
    _pyi_private_get_type: Sealed  # type: ignore[assignment]

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> Sealed:
        return Sealed(value or "")

    def to_python(self, value: Any) -> Any:
        # Deserialising (loaddata): a token is already sealed, anything else is plaintext.
        if isinstance(value, str) and looks_sealed(value):
            return Sealed(value)
        return value

    def get_prep_value(self, value: Any) -> Any:
        if isinstance(value, Sealed):
            return value.token
        if isinstance(value, str):
            return to_sealed(value).token
        return super().get_prep_value(value)

    def value_to_string(self, obj: models.Model) -> str:
        return str(to_sealed(self.value_from_object(obj)).token)


class SealedServiceAccountField(models.JSONField):
    """A JSONField for a service account whose `private_key` is sealed."""

    descriptor_class = _SealingServiceAccount

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        return _loaded_service_account(super().from_db_value(value, expression, connection))

    def to_python(self, value: Any) -> Any:
        value = super().to_python(value)
        key = value.get(SEALED_JSON_KEY) if isinstance(value, dict) else None
        if isinstance(key, str) and looks_sealed(key):
            return _loaded_service_account(dict(value))
        return value

    def get_prep_value(self, value: Any) -> Any:
        return super().get_prep_value(_stored_service_account(value))

    def value_to_string(self, obj: models.Model) -> Any:
        return _stored_service_account(self.value_from_object(obj))
