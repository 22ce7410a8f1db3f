"""The list serializers' flat rows (fleet.api.FlatRowsMixin) answer exactly what DRF's own
field-by-field to_representation answers, nulls and annotations included."""

from __future__ import annotations

from decimal import Decimal

from rest_framework import serializers

from instances.api.serializers import InstanceSerializer, OperationSerializer
from sessions_mgmt.api.serializers import BackupSerializer, SessionSerializer

from .conftest import make_backup, make_instance, make_operation, make_session


def _drf(serializer_class, obj):
    return serializers.ModelSerializer.to_representation(serializer_class(), obj)


def test_flat_rows_equal_drfs_own_rows_for_every_list(alice_org, plan):
    instance = make_instance(
        alice_org, "flat-bot", external_id=None, price_input_per_mtok=Decimal("1.5")
    )
    bare = make_instance(alice_org, "flat-bare", external_id="x-1", provider_api_key="")
    session = make_session(instance, "agent:main:flat", last_activity_at=None, pruned_at=None)
    session.instance_name = instance.name
    backup = make_backup(instance)
    backup.instance_name = instance.name
    operation = make_operation(bare)
    cases = [
        (InstanceSerializer, instance),
        (InstanceSerializer, bare),
        (SessionSerializer, session),
        (BackupSerializer, backup),
        (OperationSerializer, operation),
    ]
    for serializer_class, obj in cases:
        flat = serializer_class(obj).data
        assert flat == _drf(serializer_class, obj), serializer_class.__name__
        assert list(flat) == list(_drf(serializer_class, obj))  # same keys, same order
    many = SessionSerializer([session, session], many=True).data
    assert many == [_drf(SessionSerializer, session)] * 2
