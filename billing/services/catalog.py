"""The catalog staff edit in the admin: plans (limits and prices) and the LLM price table.

Every write goes through these functions, which validate the row, save it and write an audit row
naming who changed what (old and new value of each field), so a change of a price is as
traceable as a change of a subscription. The admin calls them from save_model/delete_model.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.db import models, transaction

from accounts.services import Actor, audit

from ..models import ModelPrice, Plan


def _plain(value):
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return value


def _values(obj: models.Model) -> dict:
    return {
        f.attname: _plain(f.value_from_object(obj))
        for f in obj._meta.concrete_fields
        if not f.primary_key
    }


def _changes(before: dict | None, after: dict) -> dict:
    """{field: [old, new]} for each field that changed (old is None for a new row)."""
    before = before or {}
    return {k: [before.get(k), v] for k, v in after.items() if before.get(k) != v}


def _save(*, actor: Actor, obj: models.Model, noun: str) -> dict:
    model = type(obj)
    stored = model.objects.select_for_update().filter(pk=obj.pk).first() if obj.pk else None
    before = _values(stored) if stored is not None else None
    obj.full_clean()
    obj.save()
    obj.refresh_from_db()
    changes = _changes(before, _values(obj))
    if changes:
        audit(
            actor=actor,
            action=f"{noun}.{'changed' if before is not None else 'created'}",
            target=obj,
            data={"changes": changes},
        )
    return changes


def _delete(*, actor: Actor, obj: models.Model, noun: str) -> None:
    audit(actor=actor, action=f"{noun}.deleted", target=obj, data={"values": _values(obj)})
    obj.delete()


@transaction.atomic
def plan_save(*, actor: Actor, plan: Plan) -> dict:
    """Create or change a plan (validated); returns {field: [old, new]} of what changed."""
    return _save(actor=actor, obj=plan, noun="plan")


@transaction.atomic
def plan_delete(*, actor: Actor, plan: Plan) -> None:
    """Delete a plan nobody subscribes to (a subscribed one is protected by its foreign key)."""
    _delete(actor=actor, obj=plan, noun="plan")


@transaction.atomic
def model_price_save(*, actor: Actor, price: ModelPrice) -> dict:
    """Create or change a row of the LLM price table; returns what changed."""
    return _save(actor=actor, obj=price, noun="model_price")


@transaction.atomic
def model_price_delete(*, actor: Actor, price: ModelPrice) -> None:
    _delete(actor=actor, obj=price, noun="model_price")
