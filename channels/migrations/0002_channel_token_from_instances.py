"""The old Instance.channel_token (the wizard stored it and nothing used it) becomes a Telegram
Channel of its instance: same encrypted token, DM pairing, status "applying" (the next
`instance.ready` or health check applies it). The column stays (a later cleanup may drop it);
it is emptied here so the token has one home. Reversible: the token goes back to the column."""

from django.db import migrations


def forwards(apps, schema_editor):
    Instance = apps.get_model("instances", "Instance")
    Channel = apps.get_model("channels", "Channel")
    for instance in Instance.objects.exclude(channel_token="").iterator():
        token = (instance.channel_token or "").strip()
        if not token:
            continue
        if not Channel.objects.filter(instance=instance, kind="telegram").exists():
            Channel.objects.create(
                organization_id=instance.organization_id,
                instance=instance,
                kind="telegram",
                secret=token,
                dm_policy="pairing",
                status="applying",
                last_error="Carried over from the deploy form; not checked with Telegram yet.",
            )
        Instance.objects.filter(pk=instance.pk).update(channel_token="")


def backwards(apps, schema_editor):
    Instance = apps.get_model("instances", "Instance")
    Channel = apps.get_model("channels", "Channel")
    for channel in Channel.objects.filter(kind="telegram").iterator():
        Instance.objects.filter(pk=channel.instance_id, channel_token="").update(
            channel_token=channel.secret
        )


class Migration(migrations.Migration):
    dependencies = [("channels", "0001_initial")]

    operations = [migrations.RunPython(forwards, backwards)]
