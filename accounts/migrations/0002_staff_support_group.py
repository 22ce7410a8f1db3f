"""Staff roles: the "Support" group and the permission to read customers' transcripts.

Decision (docs/admin.md, "Staff roles"): the transcript permission is a row of its own,
"sessions_mgmt.view_transcript" (codename view_transcript on the Session content type), created
here with the group instead of a Meta.permissions entry, so no migration in sessions_mgmt (whose
migrations another team owns) is needed and no model changes. Support gets view permissions
only: it sees instances, sessions (metadata, tokens, costs), operations, backups and events, and
opens a transcript through /admin/sessions_mgmt/session/<id>/transcript/ (audited; a reason is
required unless the customer allowed support access). It has no change permission, so no admin
action runs for it.

Default "view_*" permissions are normally created after migrate (post_migrate); we create the
ones we need here with the same codename and name, and Django's own pass skips existing rows.
"""

from django.db import migrations

GROUP = "Support"
TRANSCRIPT = ("sessions_mgmt", "session", "view_transcript", "Can read session transcripts (staff)")
VIEW = [
    ("instances", "host"),
    ("instances", "instance"),
    ("instances", "operation"),
    ("instances", "instanceevent"),
    ("sessions_mgmt", "session"),
    ("sessions_mgmt", "backup"),
    ("accounts", "organization"),
    ("accounts", "membership"),
]
VERBOSE = {"instanceevent": "instance event"}


def _permission(apps, app_label, model, codename, name):
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    ct, _ = ContentType.objects.get_or_create(app_label=app_label, model=model)
    perm, _ = Permission.objects.get_or_create(
        content_type=ct, codename=codename, defaults={"name": name}
    )
    return perm


def create_support_group(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    group, _ = Group.objects.get_or_create(name=GROUP)
    perms = [
        _permission(apps, app, model, f"view_{model}", f"Can view {VERBOSE.get(model, model)}")
        for app, model in VIEW
    ]
    perms.append(_permission(apps, *TRANSCRIPT))
    group.permissions.add(*perms)


def remove_support_group(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    Group.objects.filter(name=GROUP).delete()
    Permission.objects.filter(
        content_type__app_label=TRANSCRIPT[0], codename=TRANSCRIPT[2]
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("instances", "0001_initial"),
        ("sessions_mgmt", "0001_initial"),
    ]

    operations = [migrations.RunPython(create_support_group, remove_support_group)]
