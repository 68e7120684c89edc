"""Who may open the admin, and what they see there.

- Admins (superusers): everything.
- Approvers: staff, with the approvers group's view permissions below. They see proposals (of the agents they may
  decide) with the decision form, and config versions, agents, watched versions and the audit trail read-only;
  locking and rolling back are actions that open the web pages, which go through the same services.
- Reviewers: not staff; the admin sends them to its sign-in page.

An approver made by ``create_user`` is staff; a user added to the approvers group in the admin becomes staff too
(``approvers_made_staff``), and the group's permissions are (re)granted after every ``migrate``.
"""

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission

from people.roles import GROUP_NAMES, Role

APPROVER_PERMISSIONS = (
    ("tuner", "view_proposal"),
    ("tuner", "view_proposalevidence"),
    ("thresholds", "view_agent"),
    ("thresholds", "view_configversion"),
    ("approvals", "view_auditevent"),
    ("approvals", "view_versionwatch"),
)


def approver_permissions_ensure(**kwargs: Any) -> None:
    """Give the approvers group exactly its view permissions (a post_migrate receiver)."""
    group, _ = Group.objects.get_or_create(name=GROUP_NAMES[Role.APPROVER])
    wanted = [
        p
        for app_label, codename in APPROVER_PERMISSIONS
        for p in Permission.objects.filter(content_type__app_label=app_label, codename=codename)
    ]
    group.permissions.set(wanted)


def approvers_made_staff(sender: Any, instance: Any, action: str, pk_set: set[int] | None, **kwargs: Any) -> None:
    """m2m_changed on User.groups: joining the approvers group makes a user staff (the admin's door)."""
    if action != "post_add" or not pk_set or not isinstance(instance, get_user_model()):
        return
    if Group.objects.filter(pk__in=pk_set, name=GROUP_NAMES[Role.APPROVER]).exists() and not instance.is_staff:
        instance.is_staff = True
        instance.save(update_fields=["is_staff"])
