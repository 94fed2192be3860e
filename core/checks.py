"""System checks for the secrets key (`manage.py check`, migrate, every command).

A deployment (SECRET_KEY set) must configure HERALD_SECRETS_KEY with valid Fernet
keys, or it could neither store nor read provider credentials; a local install
(SECRET_KEY unset: `make run`, tests) uses the generated key in the var dir
(core/secrets.py, docs/deploy.md "Secrets key").
"""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Error, register

from core.secrets import key_problems


@register()
def secrets_key_configured(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    return [
        Error(
            problem,
            hint="Generate a key with `python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'` and set HERALD_SECRETS_KEY on every node "
            "(docs/deploy.md, 'Secrets key').",
            id="core.E001",
        )
        for problem in key_problems()
    ]
