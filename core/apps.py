from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Projects & keys"

    def ready(self) -> None:
        # core.audit connects the console login receivers (Django's auth signals);
        # drf-spectacular finds extensions only once their module is imported.
        from django.db.models.signals import post_migrate

        import core.audit
        import core.schema  # noqa: F401
        from core import checks  # noqa: F401  (registers the system checks)
        from core.access import sync_role_groups

        post_migrate.connect(sync_role_groups, dispatch_uid="herald_sync_role_groups")
