from django.apps import AppConfig
from django.db.backends.signals import connection_created


class SegmentsConfig(AppConfig):
    name = "segments"
    verbose_name = "Segments & users"

    def ready(self) -> None:
        # SQLite gets the version comparison the compiled rules call, on every
        # connection before its first query (segments/rules/sql.py).
        from segments.rules import on_connection_created

        connection_created.connect(on_connection_created, dispatch_uid="segments.sqlite_functions")
