"""`{% load public_text %}` then `{{ op.error|public }}`: every customer-facing render of a
stored message (Instance.status_message, Operation.error and step details, Backup.error, event
messages) goes through fleet.text.public_text, so no engine URL, host port, container name or host
path reaches a customer's page. The staff admin renders the fields as they are."""

from django import template

from fleet.text import public_text

register = template.Library()


@register.filter(name="public")
def public(value):
    if value is None:
        return ""
    return public_text(str(value))
