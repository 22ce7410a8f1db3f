from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('instances', '0001_initial'),
        ('sessions_mgmt', '0001_initial'),
    ]

    operations = [
        migrations.AddField(
            model_name='session',
            name='provider',
            field=models.CharField(blank=True, max_length=64),
        ),
        migrations.AddField(
            model_name='session',
            name='openclaw_updated_ms',
            field=models.BigIntegerField(default=0),
        ),
        migrations.AddIndex(
            model_name='backup',
            index=models.Index(fields=['instance', 'state', '-created_at'], name='sessions_mg_instanc_febd3f_idx'),
        ),
    ]
