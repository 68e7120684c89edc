# The watchdog's counts read answered decisions over a time range from this index alone.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('auditlog', '0008_decision_shadow'),
        ('thresholds', '0006_config_version_canary_source'),
    ]

    operations = [
        migrations.AddIndex(
            model_name='decision',
            index=models.Index(condition=models.Q(('response_action__isnull', False)), fields=['agent', 'timestamp', 'response_action', 'review_reason', 'config_version'], name='decision_answered_time'),
        ),
    ]
