"""One baseline transition event per existing instance, so that compute time (billed from the
recorded transitions since instances/state.py) counts instances that predate the state machine:
an instance running since before this migration is billed from its running_since."""

from django.db import migrations
from django.utils import timezone


def record_baseline(apps, schema_editor):
    Instance = apps.get_model("instances", "Instance")
    InstanceEvent = apps.get_model("instances", "InstanceEvent")
    have = set(
        InstanceEvent.objects.filter(kind="transition").values_list("instance_id", flat=True)
    )
    now = timezone.now()
    InstanceEvent.objects.bulk_create(
        [
            InstanceEvent(
                instance_id=instance.pk,
                kind="transition",
                message=f"{instance.status} (baseline: recorded when the state machine arrived)",
                data={
                    "from": instance.status,
                    "to": instance.status,
                    "reason": "baseline",
                    "actor": "system",
                },
                created_at=instance.running_since or instance.updated_at or now,
            )
            for instance in Instance.objects.exclude(status="purged").exclude(pk__in=have)
        ]
    )


class Migration(migrations.Migration):
    dependencies = [("instances", "0002_operation_heartbeat")]

    operations = [migrations.RunPython(record_baseline, migrations.RunPython.noop)]
