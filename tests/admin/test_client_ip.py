"""Staff audit rows carry the client's address by the trusted-proxy rule (accounts.client_ip):
behind the proxy the forwarded client, never the proxy's REMOTE_ADDR; without a trusted proxy a
forged X-Forwarded-For is ignored."""

import pytest
from django.urls import reverse

from accounts.models import AuditEvent
from instances.models import Instance

from .conftest import make_instance, make_session

REASON = {"reason": "Ticket #81: the customer asked us to look"}


@pytest.fixture
def stopped_session(org, host):
    instance = make_instance(org, host, status=Instance.Status.STOPPED)
    return make_session(instance, session_key="agent:main:telegram:direct:81")


def _audit_ip(support_client, session, **meta):
    url = reverse("admin:sessions_mgmt_session_transcript", args=[session.pk])
    assert support_client.post(url, REASON, **meta).status_code == 200
    return AuditEvent.objects.filter(action="transcript.view_failed_by_staff").latest("pk").ip


def test_behind_the_trusted_proxy_the_staff_audit_records_the_forwarded_client(
    settings, support_client, stopped_session
):
    settings.TRUSTED_PROXY_COUNT, settings.TRUSTED_CLIENT_IP_HEADER = 1, ""
    forwarded = {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "198.51.100.1, 203.0.113.30"}
    assert _audit_ip(support_client, stopped_session, **forwarded) == "203.0.113.30"


def test_without_a_trusted_proxy_a_forged_forwarded_for_is_ignored(
    settings, support_client, stopped_session
):
    settings.TRUSTED_PROXY_COUNT, settings.TRUSTED_CLIENT_IP_HEADER = 0, ""
    forged = {"REMOTE_ADDR": "192.0.2.50", "HTTP_X_FORWARDED_FOR": "203.0.113.31"}
    assert _audit_ip(support_client, stopped_session, **forged) == "192.0.2.50"
