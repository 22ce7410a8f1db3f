"""Views of the edge (docs/edge.md): Caddy's on-demand TLS `ask` endpoint and the dashboard's
"Open assistant" button.

- ``ask`` (GET /edge/ask?domain=NAME, asked by the proxy before it requests a certificate): 200
  for the host name of a live instance, 404 for anything else, so nobody can make us request
  certificates for arbitrary names. No session, no CSRF (the proxy is not a browser); it tells
  only yes or no.
- ``open_assistant`` (POST /instances/<id>/open/): for roles that may read transcripts; asks the
  instance for a one-time owner link (instances.public_access), audited, and redirects the
  browser to the Control UI at the public address, signed in.
"""

from __future__ import annotations

import logging

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from accounts import roles
from accounts.services import Actor

from . import edge, public_access
from .views import get_instance_for_user

log = logging.getLogger(__name__)


@require_GET
@never_cache
def ask(request):
    domain = request.GET.get("domain", "")
    if len(domain) > 253 or edge.instance_for_host(domain) is None:
        return HttpResponse("no\n", status=404, content_type="text/plain")
    return HttpResponse("yes\n", content_type="text/plain")


@login_required
@require_POST
@never_cache
def open_assistant(request, pk):
    _membership, instance = get_instance_for_user(request, pk, roles.VIEW_TRANSCRIPTS)
    try:
        link = public_access.sign_in_link_create(
            actor=Actor.from_request(request), instance=instance, via="dashboard"
        )
    except (ValidationError, public_access.GatewayUnavailable) as exc:
        text = exc.messages[0] if isinstance(exc, ValidationError) else str(exc)
        messages.error(request, text)
        return redirect(reverse("instances:detail", args=[instance.pk]))
    response = HttpResponseRedirect(link.url)
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"
    return response
