"""The Stripe webhook endpoint: verify the signature on the raw body, store the event, answer 200.

A bad signature is a 400 and nothing is stored. Storing by event id, exactly-once processing and
the dispatch table live in billing.services.stripe_events.
"""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from . import stripe_api
from .services import stripe_events

logger = logging.getLogger(__name__)


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> HttpResponse:
    try:
        event = stripe_api.construct_event(request.body, request.headers.get("Stripe-Signature"))
    except stripe_api.InvalidSignature as exc:
        logger.warning("rejected a Stripe webhook: %s", exc)
        return HttpResponseBadRequest("invalid signature")
    stripe_events.stripe_event_record(event)
    return HttpResponse("ok", content_type="text/plain")
