"""`manage.py send_test_push`: the /test endpoint from the shell."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandError, CommandParser

from campaigns.testpush import test_push_send, validate_test_push
from core.audit import AuditedCommand
from core.errors import ApplicationError
from core.models import Project


class Command(AuditedCommand):
    help = "Send one push now to a user's newest active token or to a given device token."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--project", required=True, help="project id")
        parser.add_argument("--title", required=True)
        parser.add_argument("--body", required=True)
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--app-user-id")
        target.add_argument(
            "--device-token",
            help="a device token, or a registered web push subscription's endpoint",
        )
        target.add_argument(
            "--subscription",
            help="a browser's web push subscription as JSON (PushSubscription.toJSON())",
        )
        parser.add_argument("--provider", choices=("apns", "fcm", "webpush"))
        parser.add_argument("--platform", choices=("ios", "android", "web"))
        parser.add_argument("--data", help="JSON object of custom data")
        parser.add_argument(
            "--silent",
            action="store_true",
            help="a data-only (background) push: no alert, sound or badge",
        )
        parser.add_argument("--json", action="store_true", help="print the result as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        project = Project.objects.filter(pk=options["project"]).first()
        if project is None:
            raise CommandError(f"No project {options['project']}.")
        payload: dict[str, Any] = {"title": options["title"], "body": options["body"]}
        for name in ("app_user_id", "device_token", "provider", "platform"):
            if options.get(name):
                payload[name] = options[name]
        if options.get("subscription"):
            try:
                payload["subscription"] = json.loads(options["subscription"])
            except ValueError as exc:
                raise CommandError("--subscription must be a JSON object.") from exc
        if options.get("silent"):
            payload["silent"] = True
        if options.get("data"):
            try:
                payload["data"] = json.loads(options["data"])
            except ValueError as exc:
                raise CommandError("--data must be a JSON object.") from exc
        try:
            result = test_push_send(project=project, fields=validate_test_push(payload))
        except ApplicationError as exc:
            if options["json"]:
                self.stdout.write(json.dumps({"error": {"code": exc.code, **exc.details}}))
            raise CommandError(f"{exc.code}: {exc.message}") from exc
        if options["json"]:
            self.stdout.write(json.dumps(result))
        else:
            self.stdout.write(
                f"sent: delivery {result['delivery_id']} via {result['provider']}, "
                f"provider message id {result['provider_message_id']}"
            )
