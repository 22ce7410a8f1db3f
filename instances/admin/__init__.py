"""Staff admin for hosts, instances, operations and events (docs/admin.md).

    hosts.py       hosts and their capacity; edits through the audited host services
    instances.py   the instance admin: view-only rows, actions that call services
    operations.py  operations with their steps (view-only)
    events.py      transitions and reconcile corrections (view-only)
    extensions.py  how apps above instances add to the instance admin (sessions_mgmt does)
    common.py      the acting staff member, the operate permission, read-only admins

Who may do what: viewing needs the model's Django "view" permission (the Support group has
it); operating (restart, stop, start, upgrade, back up, prune, sync, restore) needs
"instances.change_instance" (superusers; Support does not have it). The admin site itself (titles,
the fleet overview, the staff door) is fleet/admin.py.
"""

from . import events, hosts, instances, operations  # noqa: F401 - registers the ModelAdmins
from .common import OPERATE_PERMISSION, ReadOnlyAdmin, admin_actor, money, render_steps
from .extensions import InstanceAction, InstanceAdminExtension, InstancePanel, extend

__all__ = [
    "OPERATE_PERMISSION",
    "InstanceAction",
    "InstanceAdminExtension",
    "InstancePanel",
    "ReadOnlyAdmin",
    "admin_actor",
    "extend",
    "money",
    "render_steps",
]
