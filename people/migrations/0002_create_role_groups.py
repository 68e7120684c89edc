"""The role groups exist from the first migrate, so roles can be granted in the admin straight away."""

from typing import Any

from django.db import migrations

from people.roles import GROUP_NAMES


def groups_create(apps: Any, schema_editor: Any) -> None:
    Group = apps.get_model("auth", "Group")
    for name in GROUP_NAMES.values():
        Group.objects.get_or_create(name=name)


class Migration(migrations.Migration):
    dependencies = [
        ("people", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    # Reversing leaves the groups in place: they may hold members by then.
    operations = [migrations.RunPython(groups_create, migrations.RunPython.noop)]
