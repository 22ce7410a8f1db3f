"""The instance admin's extension point: how an app above instances adds to the instance admin.

instances knows nothing of the apps above it (the chain accounts <- billing <- instances <-
sessions_mgmt, docs/architecture.md). sessions_mgmt/admin.py adds its columns (last good
backup), filters (backup overdue), actions (back up, prune, sync, restore), change-page panels
(recent sessions and backups) and views (the restore page) by calling `extend(...)` once, at
import time of its admin module (the admin's autodiscovery imports it after instances/admin, and
before the URLconf asks the instance admin for its URLs). The instance admin reads the registry
on every request, so the order of the apps' admin modules only orders the columns.

    extend(InstanceAdminExtension(name="sessions", list_filter=[...], actions=[...], ...))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class InstanceAction:
    """One service call per instance, offered as a changelist action ("<name>_instances") and,
    with `button`, as a POST button on the change page (admin:instances_instance_run).

    `run(actor=..., instance=..., **kwargs)` calls the service and returns its result (usually
    the Operation it queued). A service's OperationInProgress, ValidationError or PermissionDenied
    becomes an error message naming the instance; any other error too, without a 500.
    `done` is the success message ("Backup queued for a, b."); `report(request, instance,
    result)` replaces it for results that say more (a sync's counts). `run_many(model_admin,
    request, instances)` takes over when several instances are selected (return True when it
    did), e.g. to queue one task each instead of working inside the request."""

    name: str
    label: str
    description: str
    run: Callable[..., Any]
    done: str
    button: bool = True
    report: Callable[..., None] | None = None
    run_many: Callable[..., bool] | None = None


@dataclass(frozen=True)
class InstancePanel:
    """A table on the instance's change page: `template` is included with `panel` in its
    context, `context(request, instance, model_admin)` returns what it shows. Panels are shown
    by `order` (the instance admin's own: operations 20, events 40)."""

    template: str
    context: Callable[..., dict]
    order: int = 50


@dataclass(frozen=True)
class InstanceAdminExtension:
    """What one app adds to the instance admin. Every part is optional.

    - annotate(queryset) -> queryset: annotations the displays read (one query for the list);
    - displays: named read-only values (functions of the instance, decorated with
      admin.display for a column title and ordering); `list_display` names those shown as
      changelist columns (appended in order), `detail_fields` those shown on the change page;
    - list_filter: filter classes appended to the changelist's;
    - actions: InstanceAction (one service call per instance);
    - admin_actions: changelist actions with their own flow, as Django takes them
      (function(model_admin, request, queryset), decorated with admin.action; use
      permissions=["operate"] for anything that changes an instance);
    - urls(model_admin) -> [path(...)]: extra views under /admin/instances/instance/;
    - links: (label, url name) pairs shown as object tools on the change page, the URL taking
      the instance's pk, for users who may operate;
    - panels: InstancePanel tables on the change page.
    """

    name: str
    annotate: Callable[..., Any] | None = None
    displays: Mapping[str, Callable[..., Any]] = field(default_factory=dict)
    list_display: Sequence[str] = ()
    detail_fields: Sequence[str] = ()
    list_filter: Sequence[Any] = ()
    actions: Sequence[InstanceAction] = ()
    admin_actions: Sequence[Callable[..., Any]] = ()
    urls: Callable[..., list] | None = None
    links: Sequence[tuple[str, str]] = ()
    panels: Sequence[InstancePanel] = ()


_extensions: dict[str, InstanceAdminExtension] = {}


def extend(extension: InstanceAdminExtension) -> None:
    """Add (or, under the same name, replace) an extension of the instance admin."""
    _extensions[extension.name] = extension


def extensions() -> list[InstanceAdminExtension]:
    return list(_extensions.values())


def display(name: str) -> Callable[..., Any] | None:
    for extension in _extensions.values():
        if name in extension.displays:
            return extension.displays[name]
    return None
