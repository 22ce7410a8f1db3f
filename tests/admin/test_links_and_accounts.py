"""Links between admin pages filter what they promise, and the accounts admin writes through
the audited services."""

import pytest
from django.urls import reverse

from accounts.models import AuditEvent, Organization
from instances.models import InstanceEvent

from .conftest import make_backup, make_instance, make_operation, make_session


@pytest.mark.parametrize(
    "changelist",
    [
        "admin:sessions_mgmt_session_changelist",
        "admin:instances_operation_changelist",
        "admin:sessions_mgmt_backup_changelist",
        "admin:instances_instanceevent_changelist",
    ],
)
def test_view_all_links_of_the_instance_page_filter_by_that_instance(
    admin_client_, org, host, changelist
):
    mine, other = make_instance(org, host), make_instance(org, host)
    for instance in (mine, other):
        make_session(instance)
        make_operation(instance)
        make_backup(instance)
        InstanceEvent.objects.create(instance=instance, kind="restarted", message="x")

    page = admin_client_.get(reverse(changelist), {"instance__id__exact": str(mine.pk)})

    assert page.status_code == 200
    rows = page.context["cl"].result_list
    assert len(rows) == 1
    assert rows[0].instance_id == mine.pk


@pytest.mark.parametrize(
    "changelist",
    [
        "admin:instances_instance_changelist",
        "admin:sessions_mgmt_session_changelist",
        "admin:instances_operation_changelist",
        "admin:accounts_auditevent_changelist",
    ],
)
def test_organization_links_filter_by_that_organization(admin_client_, org, host, changelist):
    page = admin_client_.get(reverse(changelist), {"organization__id__exact": org.pk})
    assert page.status_code == 200


def test_renaming_an_organization_in_admin_goes_through_the_audited_service(
    admin_client_, superuser, org
):
    url = reverse("admin:accounts_organization_change", args=[org.pk])
    assert admin_client_.get(url).status_code == 200

    membership = org.memberships.get()
    response = admin_client_.post(
        url,
        {
            "name": "Acme Renamed",
            "slug": "forged",
            # The (read-only) membership inline's management form, as the browser sends it.
            "memberships-TOTAL_FORMS": "1",
            "memberships-INITIAL_FORMS": "1",
            "memberships-MIN_NUM_FORMS": "0",
            "memberships-MAX_NUM_FORMS": "1000",
            "memberships-0-id": str(membership.pk),
            "memberships-0-organization": str(org.pk),
        },
    )

    assert response.status_code == 302
    org.refresh_from_db()
    assert (org.name, org.slug) == ("Acme Renamed", "acme")
    event = AuditEvent.objects.get(action="organization.renamed")
    assert event.actor == superuser
    assert event.data["from"] == "Acme Agency"
    assert event.data["via"] == "admin"


def test_organizations_are_not_added_or_deleted_in_admin(admin_client_, org):
    assert admin_client_.get(reverse("admin:accounts_organization_add")).status_code == 403
    delete = reverse("admin:accounts_organization_delete", args=[org.pk])
    assert admin_client_.post(delete, {"post": "yes"}).status_code == 403
    assert Organization.objects.filter(pk=org.pk).exists()


def test_revoking_an_api_token_in_admin_uses_the_service(admin_client_, org, make_token):
    token, _ = make_token(org)

    admin_client_.post(
        reverse("admin:accounts_apitoken_changelist"),
        {"action": "revoke_tokens", "_selected_action": [str(token.pk)], "index": 0},
    )

    token.refresh_from_db()
    assert token.revoked_at is not None
    assert AuditEvent.objects.filter(action="api_token.revoked", target_id=str(token.pk)).exists()
