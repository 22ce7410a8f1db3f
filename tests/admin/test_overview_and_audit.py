"""The fleet overview page and the audit log admin."""

from datetime import timedelta

from django.urls import reverse
from django.utils import timezone

from accounts.models import AuditEvent
from accounts.services import SYSTEM, audit
from instances.models import Instance, Operation

from .conftest import make_backup, make_instance, make_operation, make_org, make_session, make_usage
from .door import sign_in_staff

OVERVIEW = reverse("admin:fleet_overview")


def test_the_overview_is_linked_from_the_admin_index(admin_client_):
    index = admin_client_.get(reverse("admin:index"))

    assert OVERVIEW == "/admin/overview/"
    assert OVERVIEW.encode() in index.content
    # Its address until the overview moved onto the admin site still leads there.
    moved = admin_client_.get("/admin/instances/host/overview/")
    assert (moved.status_code, moved["Location"]) == (301, OVERVIEW)


def test_the_overview_shows_capacity_statuses_failures_overdue_backups_and_costs(
    admin_client_, org, host
):
    old = timezone.now() - timedelta(days=3)
    pricey = make_instance(org, host, name="pricey-bot", memory_mb=2048)
    make_usage(pricey, usd="42.75")
    make_backup(pricey)
    neglected = make_instance(org, host, name="neglected-bot", created_at=old)
    make_backup(neglected, age=timedelta(hours=30))
    make_instance(org, host, name="loopy-bot", status=Instance.Status.CRASH_LOOPING)
    make_instance(org, host, name="gone-bot", status=Instance.Status.DELETED, host_port=None)
    make_operation(
        neglected, state=Operation.State.FAILED, kind="upgrade", error="The image did not start."
    )
    make_session(pricey, session_key="agent:main:whatsapp:big-spender", cost="9.87")

    page = admin_client_.get(OVERVIEW)

    assert page.status_code == 200
    html = page.content.decode()
    ctx = page.context
    (h,) = ctx["hosts"]
    assert (h.live_count, h.memory_allocated) == (3, 2048 + 1024 + 1024)
    assert "4,096 / 8,192 MB (50 %)" in html
    statuses = {r["status"]: r["count"] for r in ctx["by_status"]}
    assert statuses == {"running": 2, "crash_looping": 1, "deleted": 1}
    assert "The image did not start." in html
    assert [i.name for i in ctx["overdue"]] == ["neglected-bot"]
    assert ctx["costliest_instances"][0].name == "pricey-bot"
    assert "42.75" in html
    assert "big-spender" in html and "9.8700" in html
    assert "chart-4.6.1.umd.min.js" in html
    for name in ("billing_stripeevent", "billing_subscription", "billing_plan"):
        assert reverse(f"admin:{name}_changelist") in html


def test_the_overview_shows_the_warm_pool_per_host(admin_client_, org, host, settings):
    from decimal import Decimal

    from instances.models import PoolSlot

    settings.FLEET_WARM_POOL_SIZE = 2
    slot = {"host": host, "openclaw_version": "2026.9.6", "memory_mb": 1024, "cpus": Decimal(1)}
    PoolSlot.objects.create(state=PoolSlot.State.READY, host_port=41001, **slot)
    PoolSlot.objects.create(state=PoolSlot.State.BOOTING, host_port=41002, **slot)
    PoolSlot.objects.create(
        state=PoolSlot.State.CLAIMED, host_port=41003, claimed_at=timezone.now(), **slot
    )
    cold = make_instance(org, host, name="cold-bot")
    make_operation(
        cold, kind="deploy", steps=[{"name": "pool", "pool": "empty", "detail": "cold deploy"}]
    )

    page = admin_client_.get(OVERVIEW)

    (row,) = page.context["pool"]
    assert (row["size"], row["ready"], row["booting"], row["claims"]) == (2, 1, 1, 1)
    assert (row["fallbacks_empty"], row["fallbacks_failed"]) == (1, 0)
    assert 'id="overview-pool"' in page.content.decode()


def test_the_overview_renders_for_an_empty_fleet(admin_client_):
    assert admin_client_.get(OVERVIEW).status_code == 200


def test_support_may_see_the_overview_but_staff_without_view_access_may_not(
    client, support_user, db
):
    from tests.factories import UserFactory

    sign_in_staff(client, support_user)
    assert client.get(OVERVIEW).status_code == 200

    client.logout()
    sign_in_staff(client, UserFactory(email="nobody@clawfleet.test", is_staff=True))
    assert client.get(OVERVIEW).status_code == 403


def test_the_overdue_filter_lists_instances_without_a_recent_good_backup(admin_client_, org, host):
    old = timezone.now() - timedelta(days=3)
    fresh = make_instance(org, host, name="fresh", created_at=old)
    make_backup(fresh)
    stale = make_instance(org, host, name="stale", created_at=old)
    make_backup(stale, age=timedelta(hours=27))
    make_backup(stale, state="failed", age=timedelta(hours=1))
    never = make_instance(org, host, name="never", created_at=old)
    make_instance(org, host, name="newborn")  # deployed an hour ago: not overdue yet

    page = admin_client_.get(reverse("admin:instances_instance_changelist") + "?backup_overdue=yes")

    names = {i.name for i in page.context["cl"].result_list}
    assert names == {stale.name, never.name}


def test_the_instance_changelist_shows_plan_cost_and_searches_by_member_email(
    admin_client_, org, host
):
    instance = make_instance(org, host, name="searchable")
    make_usage(instance, usd="12.34")
    other = make_instance(make_org(None, name="Other", slug="other"), host, name="elsewhere")
    owner_email = org.memberships.get().user.email

    page = admin_client_.get(reverse("admin:instances_instance_changelist") + f"?q={owner_email}")

    html = page.content.decode()
    assert "searchable" in html and other.name not in html
    assert "$12.34" in html
    assert "Admin Test Pro" in html


def test_the_audit_log_filters_by_organization_slug_and_date(admin_client_, org):
    other = make_org(None, name="Other", slug="other-co")
    audit(actor=SYSTEM, action="thing.done", organization=org, target=org)
    audit(actor=SYSTEM, action="thing.done", organization=other, target=other)
    old = audit(actor=SYSTEM, action="thing.old", organization=org, target=org)
    AuditEvent.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=40))
    url = reverse("admin:accounts_auditevent_changelist")

    by_org = admin_client_.get(url + "?org=acme")
    assert {e.organization_id for e in by_org.context["cl"].result_list} == {org.pk}
    assert b'name="org"' in by_org.content

    since = (timezone.now() - timedelta(days=7)).isoformat()
    recent = admin_client_.get(url, {"org": "acme", "created_at__gte": since})
    assert [e.action for e in recent.context["cl"].result_list] == ["thing.done"]


def test_the_audit_log_is_read_only_and_append_only(admin_client_, org):
    event = audit(actor=SYSTEM, action="thing.done", organization=org, target=org)
    base = "admin:accounts_auditevent_"

    assert admin_client_.get(reverse(base + "add")).status_code == 403
    change = reverse(base + "change", args=[event.pk])
    assert admin_client_.get(change).status_code == 200  # view only
    assert admin_client_.post(change, {"action": "forged"}).status_code == 403
    assert admin_client_.post(reverse(base + "delete", args=[event.pk])).status_code == 403
    listing = admin_client_.get(reverse(base + "changelist"))
    assert b"delete_selected" not in listing.content
    event.refresh_from_db()
    assert event.action == "thing.done"


def test_the_overdue_filter_column_and_overview_use_the_one_backup_rule(admin_client_, org, host):
    from sessions_mgmt.selectors import needs_backup

    old = timezone.now() - timedelta(days=3)
    never = make_instance(org, host, name="never", created_at=old)
    make_backup(make_instance(org, host, name="fresh", created_at=old))
    # Never placed on a host: nothing to back up (the old admin rule called it overdue).
    make_instance(
        org, None, name="unplaced", created_at=old, status=Instance.Status.STOPPED, host_port=None
    )
    rule = {i.name for i in needs_backup(Instance.objects.all())}
    url = reverse("admin:instances_instance_changelist")

    filtered = admin_client_.get(url + "?backup_overdue=yes").context["cl"].result_list
    listed = admin_client_.get(url).context["cl"].result_list
    overview = admin_client_.get(OVERVIEW).context["overdue"]

    assert rule == {never.name}
    assert {i.name for i in filtered} == rule
    assert {i.name for i in listed if i.backup_overdue} == rule
    assert {i.name for i in overview} == rule
    backed_up = admin_client_.get(url + "?backup_overdue=no").context["cl"].result_list
    assert {i.name for i in backed_up} == {"fresh", "unplaced"}


def test_admin_modules_write_no_audit_row_themselves():
    """Audit rows are written by services (they know what changed); an admin calls them."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    modules = [
        root / "accounts/admin.py",
        root / "sessions_mgmt/admin.py",
        root / "fleet/admin.py",
        *sorted((root / "instances/admin").glob("*.py")),
    ]
    offenders = []
    for module in modules:
        source = module.read_text()
        if "AuditEvent.objects" in source:
            offenders.append(f"{module.relative_to(root)} writes AuditEvent rows")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name == "audit":
                    offenders.append(f"{module.relative_to(root)}:{node.lineno} calls audit")
    assert offenders == []


def test_instances_admin_knows_sessions_only_through_its_extension_point():
    """instances/admin imports nothing of sessions_mgmt; what sessions add (columns, filters,
    actions, the restore page, panels) is registered by sessions_mgmt/admin.py."""
    import ast
    from pathlib import Path

    from instances.admin import extensions
    from instances.admin.instances import InstanceAdmin

    root = Path(__file__).resolve().parents[2]
    for module in sorted((root / "instances/admin").glob("*.py")):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                names += [a.name for a in node.names]
                assert not any(n.startswith("sessions_mgmt") for n in names), module

    (sessions,) = [e for e in extensions.extensions() if e.name == "sessions"]
    assert {a.name for a in sessions.actions} == {"backup", "prune", "sync"}
    from django.contrib import admin

    from instances.models import Instance

    model_admin = admin.site._registry[Instance]
    assert isinstance(model_admin, InstanceAdmin)
    names = {getattr(a, "__name__", a) for a in model_admin.actions}
    assert {"backup_instances", "prune_instances", "sync_instances", "restore_instance"} <= names
