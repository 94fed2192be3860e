"""Provider credentials encrypted at rest: the one owner of the secrets key.

Projects' private keys (APNs .p8 and certificate, the FCM service account's
`private_key`, the VAPID private key) are stored as Fernet tokens. The model fields
(core/fields.py) seal a value when it is assigned and hand back a `Sealed` when a
row is loaded; only `Sealed.reveal()` decrypts, and only delivery/credentials.py
calls it, where a sender's config is built. Presence checks (`bool(sealed)`) never
decrypt; `str`/`repr` of a `Sealed` never show the value or the token.

Keys come from HERALD_SECRETS_KEY, a comma-separated list of Fernet keys: the first
encrypts, all decrypt (MultiFernet), so a new key is put first, `manage.py
rotate_secrets` re-encrypts every row under it, then the old key is dropped. With no
HERALD_SECRETS_KEY, a local install (SECRET_KEY not set, i.e. `make run` and tests)
uses `$HERALD_VAR_DIR/secrets.key`, generated on first use (0600); a deployment
(SECRET_KEY set) must set it: the system check core.E001 and `run_stack
--production` refuse to start without it. docs/decisions.md, "Credentials at rest".
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

KEY_ENV = "HERALD_SECRETS_KEY"
# A Fernet token: version byte 0x80 and a 64-bit timestamp whose top bytes are 0,
# base64url - so every token starts "gAAAAA". No PEM or JSON value does.
_TOKEN = re.compile(r"^gAAAAA[A-Za-z0-9_=-]+$")


class SecretsKeyMissing(ImproperlyConfigured):
    """No key to encrypt or decrypt with, or a configured key is malformed."""


class SecretUnreadable(Exception):
    """A stored value no configured key decrypts (its key was dropped, or the row was
    written by another installation). The message names no secret material."""


def looks_sealed(value: str) -> bool:
    """Whether a stored text is a Fernet token (sealed) rather than plaintext."""
    return bool(_TOKEN.match(value))


def configured_keys() -> list[str]:
    """The keys in use, newest (the encrypting one) first; SecretsKeyMissing if none."""
    keys: list[str] = list(settings.HERALD_SECRETS_KEYS)
    if keys:
        return keys
    key_file: Path | None = settings.HERALD_SECRETS_LOCAL_KEY_FILE
    if key_file is None:
        raise SecretsKeyMissing(
            f"{KEY_ENV} is not set. A deployment (SECRET_KEY set) needs it to encrypt and "
            "decrypt provider credentials: generate one with `python -c 'from "
            "cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'` "
            "and set it on every node (docs/deploy.md, 'Secrets key')."
        )
    return [ensure_local_key(key_file)]


def ensure_local_key(key_file: Path) -> str:
    """The local install's key, written once (mode 0600) by whoever needs it first."""
    try:
        return key_file.read_text().strip()
    except FileNotFoundError:
        pass
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key().decode()
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race: use its key
        return key_file.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key


def key_problems() -> list[str]:
    """What is wrong with the key configuration ([] when nothing); names no key."""
    keys = list(settings.HERALD_SECRETS_KEYS)
    if not keys:
        if settings.HERALD_SECRETS_LOCAL_KEY_FILE is None:
            return [f"{KEY_ENV} is not set (required when SECRET_KEY is set)"]
        return []
    bad = []
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            bad.append(str(position))
    if bad:
        return [
            f"{KEY_ENV}: key {', '.join(bad)} of {len(keys)} is not a Fernet key "
            "(32 url-safe base64-encoded bytes)"
        ]
    return []


@functools.lru_cache(maxsize=8)
def _fernets(keys: tuple[str, ...]) -> tuple[MultiFernet, Fernet]:
    try:
        fernets = [Fernet(key) for key in keys]
    except (ValueError, TypeError) as exc:
        raise SecretsKeyMissing(
            f"{KEY_ENV} holds a value that is not a Fernet key (docs/deploy.md)."
        ) from exc
    return MultiFernet(fernets), fernets[0]


def _current() -> tuple[MultiFernet, Fernet]:
    return _fernets(tuple(configured_keys()))


def encrypt(plaintext: str) -> str:
    """A Fernet token of `plaintext` under the newest key ('' stays '')."""
    if not plaintext:
        return ""
    return _current()[0].encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    """The plaintext of a token; SecretUnreadable when no configured key opens it."""
    if not token:
        return ""
    try:
        return _current()[0].decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretUnreadable(
            f"a stored credential cannot be decrypted with the configured {KEY_ENV} "
            "(was its key removed before `manage.py rotate_secrets` ran?)"
        ) from exc


def reencrypt(token: str) -> str | None:
    """The token re-encrypted under the newest key, or None if it already is."""
    multi, newest = _current()
    try:
        newest.decrypt(token.encode())
    except InvalidToken:
        pass
    else:
        return None
    try:
        return multi.rotate(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretUnreadable(
            f"a stored credential cannot be decrypted with the configured {KEY_ENV}"
        ) from exc


class Sealed:
    """An encrypted credential as loaded from the database: truthy when set, shown as
    `<sealed>`; `reveal()` decrypts (delivery/credentials.py only)."""

    __slots__ = ("token",)

    def __init__(self, token: str = "") -> None:
        self.token = token

    @classmethod
    def seal(cls, plaintext: str) -> Sealed:
        return cls(encrypt(plaintext))

    def reveal(self) -> str:
        return decrypt(self.token)

    def __bool__(self) -> bool:
        return bool(self.token)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sealed) and other.token == self.token

    def __hash__(self) -> int:
        return hash(self.token)

    def __repr__(self) -> str:
        return "<sealed>" if self.token else "<sealed: empty>"

    __str__ = __repr__
