"""Approvers sign off in the admin: existing members of the approvers group become staff. Their permissions are
granted after every migrate (people.admin_access), once the permissions themselves exist."""

from typing import Any

from django.db import migrations


def approvers_staff(apps: Any, schema_editor: Any) -> None:
    User = apps.get_model("auth", "User")
    User.objects.filter(groups__name="approvers", is_staff=False).update(is_staff=True)


class Migration(migrations.Migration):
    dependencies = [("people", "0002_create_role_groups")]

    operations = [migrations.RunPython(approvers_staff, migrations.RunPython.noop)]
