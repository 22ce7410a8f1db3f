"""Pieces every staff admin module shares (also sessions_mgmt/admin.py): who is acting, the
permission that operates instances, read-only admins, the steps table."""

from __future__ import annotations

from decimal import Decimal

from django.utils.html import format_html, format_html_join

from accounts.admin import ReadOnlyAdmin  # noqa: F401 - re-exported for the admin modules
from accounts.services import Actor

# Who may operate (restart, stop, start, upgrade, back up, prune, sync, restore): superusers;
# the Support group has view permissions only (docs/admin.md).
OPERATE_PERMISSION = "instances.change_instance"


def admin_actor(request) -> Actor:
    """The staff member acting, with the client IP as the rest of the product reads it."""
    return Actor.from_request(request, via="admin")


def money(value) -> str:
    return f"${Decimal(value or 0):,.2f}"


def render_steps(steps) -> str:
    if not steps:
        return "—"
    return format_html(
        '<table class="cf-steps"><thead><tr><th>step</th><th>state</th><th>started</th>'
        "<th>finished</th><th>detail</th></tr></thead><tbody>{}</tbody></table>",
        format_html_join(
            "",
            '<tr><td>{}</td><td class="cf-step-{}">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>',
            (
                (
                    s.get("name", ""),
                    s.get("state", ""),
                    s.get("state", ""),
                    (s.get("started_at") or "")[:19],
                    (s.get("finished_at") or "")[:19],
                    s.get("detail", ""),
                )
                for s in steps
                if isinstance(s, dict)
            ),
        ),
    )
