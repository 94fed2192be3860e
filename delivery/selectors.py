"""Delivery reads for the console: one user's devices and what was sent to them."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from delivery.models import PushDelivery, PushToken

USER_DELIVERIES_LIMIT = 20


def tokens_of_user(app_user_id: uuid.UUID) -> QuerySet[PushToken]:
    """The user's tokens, active first, newest registration first (token_user_active)."""
    return PushToken.objects.filter(app_user_id=app_user_id).order_by(
        "-active", "-last_registered_at", "-id"
    )


def deliveries_of_user(
    app_user_id: uuid.UUID, *, limit: int = USER_DELIVERIES_LIMIT
) -> list[PushDelivery]:
    """The user's newest deliveries (campaign sends and test pushes), at most `limit`.

    The (app_user, sent_at) index narrows to the user's rows; a user has few."""
    return list(
        PushDelivery.objects.filter(app_user_id=app_user_id)
        .select_related("campaign", "token")
        .order_by("-id")[:limit]
    )
