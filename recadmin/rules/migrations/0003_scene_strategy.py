from django.db import migrations, models

import recadmin.rules.models


class Migration(migrations.Migration):
    dependencies = [
        ("rules", "0002_change_history"),
    ]

    operations = [
        migrations.AddField(
            model_name="scene",
            name="strategy",
            field=models.JSONField(
                blank=True,
                default=list,
                help_text=recadmin.rules.models.STRATEGY_HELP,
                validators=[recadmin.rules.models.validate_strategy],
            ),
        ),
    ]
