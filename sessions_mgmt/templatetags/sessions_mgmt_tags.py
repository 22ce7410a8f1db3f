"""Small reads for the cards other pages include (`instance` in context)."""

from django import template
from django.db.models import Count, Q, Sum

from sessions_mgmt.models import Backup, Session

register = template.Library()


@register.simple_tag
def instance_backups(instance, limit=5):
    return list(Backup.objects.filter(instance=instance).order_by("-created_at")[:limit])


@register.simple_tag
def instance_backup_status(instance):
    """Where the instance's backups are kept, whether they are failing, and the plan's policy
    in words (selectors.backup_status, services.backups.backup_policy)."""
    from sessions_mgmt.selectors import backup_status
    from sessions_mgmt.services.backups import backup_policy, policy_text

    policy = backup_policy(instance)
    return {
        **backup_status(instance=instance),
        "policy": policy,
        "policy_text": policy_text(policy),
    }


@register.simple_tag
def instance_session_stats(instance):
    return Session.objects.filter(instance=instance).aggregate(
        live=Count("id", filter=~Q(status=Session.Status.PRUNED)),
        pruned=Count("id", filter=Q(status=Session.Status.PRUNED)),
        cost=Sum("cost_usd"),
        input=Sum("input_tokens"),
        output=Sum("output_tokens"),
    )
