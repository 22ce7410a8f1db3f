from django.db import migrations, models

ALLOWANCES = {"starter": (5120, 2048), "pro": (20480, 8192), "agency": (20480, 8192)}


def seed(apps, schema_editor):
    Plan = apps.get_model("billing", "Plan")
    for slug, (backup_mb, disk_mb) in ALLOWANCES.items():
        Plan.objects.filter(slug=slug).update(backup_storage_mb=backup_mb, disk_mb=disk_mb)


class Migration(migrations.Migration):
    dependencies = [("billing", "0003_seed_plans_and_prices")]

    operations = [
        migrations.AddField(
            model_name="plan",
            name="backup_storage_mb",
            field=models.PositiveIntegerField(default=5120),
        ),
        migrations.AddField(
            model_name="plan",
            name="disk_mb",
            field=models.PositiveIntegerField(default=2048),
        ),
        migrations.RunPython(seed, migrations.RunPython.noop),
    ]
