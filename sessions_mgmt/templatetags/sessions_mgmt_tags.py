"""Small reads for the cards other pages include (`instance` in context)."""

from django import template
from django.db.models import Count, Q, Sum

from sessions_mgmt.models import Backup, Session

register = template.Library()


@register.simple_tag
def instance_backups(instance, limit=5):
    return list(Backup.objects.filter(instance=instance).order_by("-created_at")[:limit])


@register.simple_tag
def instance_session_stats(instance):
    return Session.objects.filter(instance=instance).aggregate(
        live=Count("id", filter=~Q(status=Session.Status.PRUNED)),
        pruned=Count("id", filter=Q(status=Session.Status.PRUNED)),
        cost=Sum("cost_usd"),
        input=Sum("input_tokens"),
        output=Sum("output_tokens"),
    )
