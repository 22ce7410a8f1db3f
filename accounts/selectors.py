"""Reads for accounts. Every function takes the organization as a keyword."""

from .models import ApiToken, AuditEvent, Invitation, Membership, Organization


def members_for(*, organization: Organization):
    return (
        Membership.objects.select_related("user")
        .filter(organization=organization)
        .order_by("user__email")
    )


def pending_invitations_for(*, organization: Organization):
    return [i for i in Invitation.objects.filter(organization=organization) if i.is_pending]


def api_tokens_for(*, organization: Organization):
    return ApiToken.objects.select_related("created_by").filter(organization=organization)


def audit_events_for(*, organization: Organization):
    return AuditEvent.objects.select_related("actor", "actor_token").filter(
        organization=organization
    )
