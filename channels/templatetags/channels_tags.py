"""Small reads for the card the instance page includes (`instance` in context)."""

from django import template

from channels.models import Channel

register = template.Library()


@register.simple_tag
def instance_channels(instance):
    return list(Channel.objects.filter(instance=instance).order_by("kind", "account_id"))
