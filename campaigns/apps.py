from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    name = "campaigns"
    verbose_name = "Campaigns"

    def ready(self) -> None:
        # The console's dashboard and the user page's test push are campaigns' reads
        # and sends; core's admin site cannot import them, so they are plugged in here.
        from campaigns.console_hooks import connect

        connect()

        # Events are ingested by segments, which cannot import campaigns: it hands each
        # batch of new events to the listeners registered here (segments/events.py).
        from campaigns.engagement import record_engagement
        from segments.events import register_event_listener

        register_event_listener(record_engagement)
