"""The customer dashboard: pages, live partials, actions, the deploy wizard, and tenancy."""
# Private addresses here are only validated or rendered as text, never contacted: the reachability
# tests send packets only to stand-in hosts in network namespaces they create (tests/security).

import logging

import pytest
from django.urls import reverse

from accounts.models import AuditEvent
from instances.models import Instance, Operation
from tests.factories import InstanceFactory, OperationFactory

from .conftest import SECRETS, STEPS

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def fake_runtime(fake_runtime):
    """The shared fake runtime (tests/fakes), with a log text for any container or an error."""

    def install(text="", exc=None):
        fake_runtime.canned_logs = text
        if exc is not None:
            fake_runtime.errors["logs_tail"] = exc
        return fake_runtime

    return install


def instance_urls(instance, op):
    pk = instance.pk
    return {
        "detail": reverse("instances:detail", args=[pk]),
        "status": reverse("instances:status", args=[pk]),
        "logs": reverse("instances:logs", args=[pk]),
        "operation": reverse("instances:operation", args=[pk, op.pk]),
        "operation_progress": reverse("instances:operation_progress", args=[pk, op.pk]),
    }


def action_urls(instance):
    pk = instance.pk
    names = ["start", "stop", "restart", "resume", "upgrade", "delete", "reveal_token"]
    return {name: reverse(f"instances:{name}", args=[pk]) for name in names}


# --- every page renders -----------------------------------------------------------------------


def test_every_dashboard_page_renders_for_alice(alice_client, alice_op, fake_runtime):
    fake_runtime(text="gateway listening on 18789\n")
    instance = alice_op.instance
    pages = {
        "dashboard": reverse("dashboard"),
        "fleet": reverse("instances:fleet"),
        "deploy": reverse("instances:deploy"),
        **instance_urls(instance, alice_op),
    }
    for name, url in pages.items():
        response = alice_client.get(url)
        assert response.status_code == 200, (name, response.status_code)
    detail = alice_client.get(pages["detail"]).content.decode()
    assert "alice-bot" in detail and "http://127.0.0.1:19188" in detail
    assert "openclaw:main" in detail  # the curl example
    assert "gw-secret-token-of-alice" not in detail  # the token only after the confirmation
    assert "sk-alice-provider-key" not in detail


def test_the_account_pages_render_in_the_product_layout(client):
    for name in ["home", "account_login", "account_signup", "account_reset_password"]:
        response = client.get(reverse(name))
        assert response.status_code == 200, name
        assert "css/app.css" in response.content.decode()
    signup = client.get(reverse("account_signup")).content.decode()
    assert "Start for $1" in signup
    assert 'for="id_email"' in signup


def test_signup_errors_are_shown_inline(client):
    response = client.post(
        reverse("account_signup"),
        {"email": "not-an-email", "password1": "x", "password2": "y"},
    )
    assert response.status_code == 200
    assert 'class="field field-error"' in response.content.decode()


def test_the_dashboard_groups_instances_by_client_with_status_and_version(
    alice_client, alice_instance, alice_org
):
    InstanceFactory(
        organization=alice_org,
        name="zeta-bot",
        local=True,
        host_port=19190,
        **SECRETS,
        client_name="Beta Bakery",
    )
    InstanceFactory(
        organization=alice_org,
        name="solo",
        local=True,
        host_port=19191,
        **SECRETS,
        status=Instance.Status.STOPPED,
    )
    body = alice_client.get(reverse("dashboard")).content.decode()
    assert body.index("Acme Dental") < body.index("Beta Bakery") < body.index("No client")
    assert "badge-running" in body and "badge-stopped" in body
    assert "2026.9.6" in body
    assert "This month" in body  # the cost column from billing's selectors


def test_without_a_plan_the_dashboard_and_the_deploy_button_lead_to_the_plans(
    alice_client, alice_org
):
    body = alice_client.get(reverse("dashboard")).content.decode()
    assert reverse("billing:plans") in body
    assert "Choose a plan" in body
    response = alice_client.get(reverse("instances:deploy"))
    assert response.status_code == 302
    assert response["Location"] == reverse("billing:plans")


def test_with_a_plan_and_no_instance_the_dashboard_invites_a_deploy(alice_client, alice_plan):
    body = alice_client.get(reverse("dashboard")).content.decode()
    assert "Deploy your first assistant" in body
    assert reverse("instances:deploy") in body


# --- live partials ----------------------------------------------------------------------------


def test_the_status_partial_answers_204_when_nothing_changed(alice_client, alice_instance):
    url = reverse("instances:status", args=[alice_instance.pk])
    first = alice_client.get(url, **HTMX)
    assert first.status_code == 200
    version = first.context["version"]
    assert alice_client.get(url, {"v": version}, **HTMX).status_code == 204
    Instance.objects.filter(pk=alice_instance.pk).update(health=Instance.Health.UNHEALTHY)
    changed = alice_client.get(url, {"v": version}, **HTMX)
    assert changed.status_code == 200
    assert "Unhealthy" in changed.content.decode()


def test_the_progress_partial_polls_while_running_and_stops_when_finished(
    alice_client, alice_instance
):
    op = OperationFactory(
        instance=alice_instance,
        kind=Operation.Kind.RESTART,
        state=Operation.State.RUNNING,
        steps=[{"name": "Stop container", "state": "running", "started_at": None}],
    )
    url = reverse("instances:operation_progress", args=[alice_instance.pk, op.pk])
    running = alice_client.get(url, **HTMX).content.decode()
    assert "hx-trigger" in running and "Stop container" in running
    Operation.objects.filter(pk=op.pk).update(state=Operation.State.SUCCEEDED)
    finished = alice_client.get(url, **HTMX).content.decode()
    assert "hx-trigger" not in finished
    assert "Done" in finished


def test_a_finished_deploy_says_the_assistant_is_running_and_how_to_reach_it(
    alice_client, alice_op
):
    url = reverse("instances:operation", args=[alice_op.instance_id, alice_op.pk])
    body = alice_client.get(url).content.decode()
    assert "Your assistant is running" in body
    assert "http://127.0.0.1:19188/v1/chat/completions" in body
    assert reverse("instances:reveal_token", args=[alice_op.instance_id]) in body


def test_a_failed_operation_shows_its_error(alice_client, alice_instance):
    op = OperationFactory(
        instance=alice_instance,
        state=Operation.State.FAILED,
        error="The model endpoint refused the key.",
        error_detail="internal detail for staff",
    )
    body = alice_client.get(
        reverse("instances:operation", args=[alice_instance.pk, op.pk])
    ).content.decode()
    assert "The model endpoint refused the key." in body
    assert "internal detail for staff" not in body


def test_the_logs_partial_shows_the_tail(alice_client, alice_instance, fake_runtime):
    fake_runtime(text="line one\nline two <script>\n")
    response = alice_client.get(reverse("instances:logs", args=[alice_instance.pk]))
    body = response.content.decode()
    assert "line two &lt;script&gt;" in body
    assert "no-store" in response["Cache-Control"]


def test_an_unreachable_engine_is_a_friendly_message_not_a_500(
    alice_client, alice_instance, fake_runtime, caplog
):
    from instances.runtime import EngineUnavailable

    fake_runtime(exc=EngineUnavailable("tcp://engine-7.fleet.test:2376", "connection refused"))
    with caplog.at_level(logging.DEBUG):
        response = alice_client.get(reverse("instances:logs", args=[alice_instance.pk]))
    assert response.status_code == 200
    assert "unreachable" in response.content.decode()
    assert "engine-7.fleet.test" not in caplog.text


def test_the_gateway_logs_are_never_written_to_our_own_logs(
    alice_client, alice_instance, fake_runtime, caplog
):
    fake_runtime(text="user said: my card is 4242 4242 4242 4242\n")
    with caplog.at_level(logging.DEBUG):
        response = alice_client.get(reverse("instances:logs", args=[alice_instance.pk]))
    assert response.status_code == 200
    assert "4242" in response.content.decode()  # shown to the owner who asked...
    assert "4242" not in caplog.text  # ...and never written to our own logs


# --- actions ----------------------------------------------------------------------------------


def test_alice_restarts_her_instance_with_a_post(alice_client, alice_instance):
    response = alice_client.post(reverse("instances:restart", args=[alice_instance.pk]))
    assert response.status_code == 302
    op = Operation.objects.get(instance=alice_instance)
    assert op.kind == Operation.Kind.RESTART and op.requested_via == "dashboard"


def test_actions_refuse_get(alice_client, alice_instance):
    for url in action_urls(alice_instance).values():
        assert alice_client.get(url).status_code == 405, url
    assert not Operation.objects.exists()


def test_a_second_action_while_one_runs_is_a_message_not_an_error(alice_client, alice_instance):
    OperationFactory(
        instance=alice_instance,
        steps=STEPS,
        kind=Operation.Kind.RESTART,
        state=Operation.State.RUNNING,
    )
    response = alice_client.post(reverse("instances:stop", args=[alice_instance.pk]), follow=True)
    assert response.status_code == 200
    assert "in progress" in response.content.decode()
    assert Operation.objects.filter(kind=Operation.Kind.STOP).count() == 0


def test_upgrade_takes_the_version_from_the_select(alice_client, alice_instance):
    alice_client.post(
        reverse("instances:upgrade", args=[alice_instance.pk]), {"version": "2026.9.5"}
    )
    op = Operation.objects.get(instance=alice_instance)
    assert op.kind == Operation.Kind.UPGRADE and op.params["to_version"] == "2026.9.5"


def test_upgrade_to_an_unknown_version_changes_nothing(alice_client, alice_instance):
    response = alice_client.post(
        reverse("instances:upgrade", args=[alice_instance.pk]), {"version": "1.0.0"}, follow=True
    )
    assert "Unknown version" in response.content.decode()
    assert not Operation.objects.exists()


def test_delete_needs_the_typed_name(alice_client, alice_instance):
    url = reverse("instances:delete", args=[alice_instance.pk])
    response = alice_client.post(url, {"confirm": "alice"}, follow=True)
    assert "Type alice-bot exactly" in response.content.decode()
    assert not Operation.objects.exists()
    alice_client.post(url, {"confirm": "alice-bot"})
    assert Operation.objects.get(instance=alice_instance).kind == Operation.Kind.DELETE


def test_revealing_the_gateway_token_needs_the_confirmation_and_is_audited(
    alice_client, alice_instance
):
    url = reverse("instances:reveal_token", args=[alice_instance.pk])
    refused = alice_client.post(url, {})
    assert refused.status_code == 302
    assert b"gw-secret-token-of-alice" not in refused.content
    response = alice_client.post(url, {"understood": "on"})
    assert response.status_code == 200
    assert "gw-secret-token-of-alice" in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    assert AuditEvent.objects.filter(
        action="instance.gateway_token_revealed", target_id=str(alice_instance.pk)
    ).exists()


# --- tenancy: charlie never reaches alice's objects ----------------------------------------------


def test_charlie_gets_404_for_every_page_of_alices_instance(charlie_client, alice_op, fake_runtime):
    rt = fake_runtime(text="alice's logs")
    for name, url in instance_urls(alice_op.instance, alice_op).items():
        assert charlie_client.get(url).status_code == 404, name
    assert rt.calls == []


def test_charlie_gets_404_for_every_action_on_alices_instance(charlie_client, alice_instance):
    before = Operation.objects.count(), AuditEvent.objects.count()
    for name, url in action_urls(alice_instance).items():
        data = {"version": "2026.9.5", "confirm": "alice-bot", "understood": "on"}
        assert charlie_client.post(url, data).status_code == 404, name
    assert (Operation.objects.count(), AuditEvent.objects.count()) == before
    alice_instance.refresh_from_db()
    assert alice_instance.status == Instance.Status.RUNNING


def test_alices_operation_id_under_charlies_instance_is_404(
    charlie_client, alice_op, charlie_instance
):
    for name in ["instances:operation", "instances:operation_progress"]:
        url = reverse(name, args=[charlie_instance.pk, alice_op.pk])
        assert charlie_client.get(url).status_code == 404, name


def test_charlies_dashboard_never_lists_alices_instances(charlie_client, alice_instance):
    for url in [reverse("dashboard"), reverse("instances:fleet")]:
        response = charlie_client.get(url)
        assert response.status_code == 200, url
        assert "alice-bot" not in response.content.decode()


# --- a viewer looks but cannot change anything ------------------------------------------------


def test_a_viewer_sees_the_instance_with_actions_disabled(victor_client, alice_instance):
    body = victor_client.get(reverse("instances:detail", args=[alice_instance.pk])).content
    body = body.decode()
    assert "actions are disabled" in body
    assert '<button class="btn" disabled>Restart</button>' in body.replace("  ", " ")
    assert "Reveal token" not in body


def test_a_viewers_post_is_403_and_changes_nothing(victor_client, alice_instance):
    before = Operation.objects.count(), AuditEvent.objects.count(), Instance.objects.count()
    for name, url in action_urls(alice_instance).items():
        data = {"version": "2026.9.5", "confirm": "alice-bot", "understood": "on"}
        response = victor_client.post(url, data)
        assert response.status_code == 403, name
        assert b"gw-secret-token-of-alice" not in response.content
    deploy = victor_client.post(
        reverse("instances:deploy"),
        {"name": "viewer-bot", "provider": "openai", "model_name": "gpt-4o", "api_key": "sk-x"},
    )
    assert deploy.status_code == 403
    assert (
        Operation.objects.count(),
        AuditEvent.objects.count(),
        Instance.objects.count(),
    ) == before
    alice_instance.refresh_from_db()
    assert alice_instance.status == Instance.Status.RUNNING


def test_a_viewer_cannot_read_the_gateway_logs(victor_client, alice_instance, fake_runtime):
    rt = fake_runtime(text="customer content")
    assert victor_client.get(reverse("instances:logs", args=[alice_instance.pk])).status_code == 403
    assert rt.calls == []


# --- the deploy wizard --------------------------------------------------------------------------

VALID = {
    "name": "new-bot",
    "provider": "openai",
    "model_name": "gpt-4o-mini",
    "api_key": "sk-test-123",
}


def _deploy(client, **changes):
    return client.post(reverse("instances:deploy"), {**VALID, **changes})


def _errors_of(response, field):
    return [str(e) for e in response.context["form"].errors.get(field, [])]


def test_deploy_with_a_taken_name_shows_the_error_inline_and_creates_nothing(
    alice_client, alice_instance
):
    before = Instance.objects.count(), Operation.objects.count()
    response = _deploy(alice_client, name="alice-bot")
    assert response.status_code == 200
    assert any("taken" in e for e in _errors_of(response, "name"))
    assert 'id="id_name-errors"' in response.content.decode()
    assert (Instance.objects.count(), Operation.objects.count()) == before


def test_deploy_without_a_key_shows_the_error_inline_and_creates_nothing(alice_client, alice_plan):
    response = _deploy(alice_client, api_key="")
    assert response.status_code == 200
    assert _errors_of(response, "api_key")
    assert not Instance.objects.exists() and not Operation.objects.exists()


def test_deploy_with_an_unknown_version_shows_the_error_inline_and_creates_nothing(
    alice_client, alice_plan
):
    response = _deploy(alice_client, openclaw_version="1999.1.1")
    assert response.status_code == 200
    assert any("Unknown version" in e for e in _errors_of(response, "openclaw_version"))
    assert not Instance.objects.exists() and not Operation.objects.exists()


def test_a_custom_provider_needs_a_base_url(alice_client, alice_plan):
    response = _deploy(alice_client, provider="custom", api_key="", model_base_url="")
    assert _errors_of(response, "model_base_url")
    assert not Instance.objects.exists()


def test_the_key_is_never_echoed_back_into_the_form(alice_client, alice_instance):
    response = _deploy(alice_client, name="alice-bot", api_key="sk-secret-echo")
    assert response.status_code == 200  # the form again, with the taken name as its error
    assert _errors_of(response, "name")
    assert "sk-secret-echo" not in response.content.decode()


def test_deploy_without_a_plan_says_so_and_links_the_plans(alice_client, alice_org):
    response = _deploy(alice_client)
    assert response.status_code == 200
    body = response.content.decode()
    assert "Choose a plan" in body and reverse("billing:plans") in body
    assert not Instance.objects.exists()


def test_a_valid_deploy_leads_to_its_live_progress(alice_client, alice_plan):
    response = _deploy(
        alice_client, provider="custom", model_base_url="https://llm.example.test/v1"
    )
    op = Operation.objects.get()
    assert op.kind == Operation.Kind.DEPLOY
    assert response["Location"] == reverse("instances:operation", args=[op.instance_id, op.pk])
    page = alice_client.get(response["Location"]).content.decode()
    assert "Deploying new-bot" in page and "hx-trigger" in page
    assert 'aria-live="polite"' in page


@pytest.mark.parametrize(
    "url", ["http://10.1.2.3/v1", "http://169.254.169.254/latest", "http://127.0.0.1:5432/v1"]
)
def test_a_custom_endpoint_the_firewall_refuses_is_a_field_error(alice_client, alice_plan, url):
    """A private, metadata or loopback endpoint could never answer from inside the container:
    the deploy form says so, and nothing is created (no packet is sent: it is never reached)."""
    response = _deploy(alice_client, provider="custom", api_key="", model_base_url=url)
    assert response.status_code == 200
    errors = _errors_of(response, "model_base_url")
    assert errors and "cannot reach this address" in errors[0]
    assert not Instance.objects.exists() and not Operation.objects.exists()
