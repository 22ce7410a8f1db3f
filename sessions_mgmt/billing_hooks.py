"""sessions_mgmt's answer to billing's "billing.session_usage" hook (fleet.hooks): the token
counters of every session last active on a day, handed to billing's own service, which attributes
the difference from the previous snapshot to that day and prices it. billing, below this app in
the chain, never reads Session itself."""

from __future__ import annotations

from billing.pricing import own_price
from billing.services.usage import SessionTotals, session_usage_record
from fleet import hooks

from .models import Session


def session_usage(*, day, start, end) -> None:
    sessions = Session.objects.filter(
        last_activity_at__gte=start, last_activity_at__lt=end
    ).select_related("instance")
    session_usage_record(
        day=day,
        sessions=[
            SessionTotals(
                session_id=s.pk,
                instance_id=s.instance_id,
                organization_id=s.organization_id,
                provider=s.instance.provider,
                model=s.model or s.instance.model_name,
                input_tokens=s.input_tokens,
                output_tokens=s.output_tokens,
                cache_read_tokens=s.cache_read_tokens,
                cache_write_tokens=s.cache_write_tokens,
                own_price=own_price(s.instance),
            )
            for s in sessions
        ],
    )


def register() -> None:
    hooks.register("billing.session_usage", session_usage)
