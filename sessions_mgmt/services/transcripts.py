"""Transcripts on demand: read from the instance's OpenClaw, one page at a time, never stored
(the mirror holds counts and costs; the words stay inside the instance)."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied

from accounts import roles
from accounts.services import Actor, audit
from instances import gateway_calls
from instances.models import Instance
from instances.openclaw.client import InstanceUnavailable

from ..models import Session
from . import access


class TranscriptUnavailable(Exception):
    """The instance is not running: transcripts live only inside it."""


def transcript_page(*, instance: Instance, session_key: str, before=None, limit: int = 50):
    """(messages oldest first, cursor of the next older page or None), fetched from OpenClaw.

    Never stored: the mirror holds counts and costs, the transcript stays in the instance."""
    limit = max(1, min(int(limit or 50), 200))
    if not Session.objects.filter(instance=instance, session_key=session_key).exists():
        raise Session.DoesNotExist(session_key)
    if instance.status not in access.SYNCABLE:
        raise TranscriptUnavailable("Start the instance to read its transcripts.")
    try:
        offset = int(before) if before not in (None, "") else None
    except (TypeError, ValueError):
        offset = None
    # A web request waits on the tenant's own process: one of the organization's few slots, a
    # short timeout and no retries (instances/gateway_calls.py), so a hung gateway stalls only
    # its own owner's page.
    try:
        with gateway_calls.slot(instance.organization_id):
            client = access.client_for(instance, timeout=int(gateway_calls.timeout()))
            return client.history(session_key, offset=offset, limit=limit, retries=0)
    except gateway_calls.GatewayBusy as exc:
        raise TranscriptUnavailable(exc.public) from exc
    except InstanceUnavailable as exc:
        raise TranscriptUnavailable("The instance is not answering right now.") from exc


def transcript_for_member(
    *, membership, instance: Instance, session_key: str, before=None, limit: int = 50
):
    """A customer reading their own organization's transcript (role table: view_transcripts)."""
    if membership.organization_id != instance.organization_id:
        raise Session.DoesNotExist(session_key)
    if not roles.role_allows(membership.role, roles.VIEW_TRANSCRIPTS):
        raise PermissionDenied("Your role in this organization does not allow reading transcripts.")
    return transcript_page(instance=instance, session_key=session_key, before=before, limit=limit)


def transcript_for_staff(
    *,
    staff_user,
    instance: Instance,
    session_key: str,
    reason: str = "",
    before=None,
    limit=50,
    ip: str | None = None,
):
    """Support reading a customer's transcript: allowed when the customer opted in or a reason
    is given; every attempt is audited with the staff member's client IP:
    "transcript.viewed_by_staff", or "transcript.view_failed_by_staff" (with the error's type)
    when the read fails, the error then raised to the caller."""
    reason = (reason or "").strip()
    if not getattr(staff_user, "is_staff", False):
        raise PermissionDenied("Only staff may read customers' transcripts.")
    if not instance.support_transcript_access and not reason:
        raise PermissionDenied(
            "The customer has not allowed support access: give a reason to read this transcript."
        )
    actor = Actor(user=staff_user, ip=ip, via="admin")
    data = {
        "session_key": session_key,
        "reason": reason[:500],
        "customer_allowed": instance.support_transcript_access,
    }
    try:
        page = transcript_page(
            instance=instance, session_key=session_key, before=before, limit=limit
        )
    except Exception as exc:
        audit(
            actor=actor,
            action="transcript.view_failed_by_staff",
            organization=instance.organization,
            target=instance,
            data={**data, "error": type(exc).__name__},
        )
        raise
    audit(
        actor=actor,
        action="transcript.viewed_by_staff",
        organization=instance.organization,
        target=instance,
        data=data,
    )
    return page
