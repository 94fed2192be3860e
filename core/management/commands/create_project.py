"""`manage.py create_project NAME [--delivery-guarantee G] [--json]`: a new project and
its first admin key.

The key is printed once and never again (only its hash is stored), so the
operator, or the script reading `--json`, must keep it now.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from core.errors import ApplicationError
from core.models import DeliveryGuarantee
from core.services import api_key_create, project_create, project_update

FIRST_KEY_NAME = "initial admin key"


class Command(BaseCommand):
    help = "Create a project and its first admin API key (the key is printed once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="Project name, e.g. 'Acme iOS'.")
        parser.add_argument(
            "--delivery-guarantee",
            default=DeliveryGuarantee.AT_MOST_ONCE,
            help="After a worker crash, pushes in flight stay unknown (at_most_once, the "
            "default) or are sent again (at_least_once).",
        )
        parser.add_argument(
            "--json",
            action="store_true",
            help='Print one JSON object {"project_id", "api_key"} instead of text.',
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            with transaction.atomic():  # a refused option leaves no project behind
                project = project_create(name=options["name"])
                project_update(
                    project=project, fields={"delivery_guarantee": options["delivery_guarantee"]}
                )
                _, full_key = api_key_create(project=project, name=FIRST_KEY_NAME)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        if options["json"]:
            self.stdout.write(json.dumps({"project_id": str(project.id), "api_key": full_key}))
            return
        self.stdout.write(f'Created project "{project.name}".')
        self.stdout.write(f"Project id: {project.id}")
        self.stdout.write(f"API key:    {full_key}")
        self.stdout.write("Store the key now: only its hash is kept, it cannot be shown again.")
