"""Staff edits of hosts go through instances.services.host_create / host_update / host_delete,
which write the row and an audit row naming who changed which field from what to what."""

from django.urls import reverse

from accounts.models import AuditEvent
from instances import services
from instances.models import Host

from .conftest import make_instance


def host_form(**values):
    form = {
        "name": "engine-2",
        "kind": "docker",
        "base_url": "unix:///nonexistent/docker-2.sock",
        "is_active": "on",
        "memory_mb": "16384",
        "max_instances": "10",
        "port_range_start": "19100",
        "port_range_end": "19999",
    }
    form.update(values)
    return {k: v for k, v in form.items() if v is not None}


def test_a_host_added_in_the_admin_is_audited(admin_client_, superuser):
    response = admin_client_.post(reverse("admin:instances_host_add"), host_form())

    assert response.status_code == 302
    host = Host.objects.get(name="engine-2")
    event = AuditEvent.objects.get(action="host.created")
    assert (event.actor, event.target_id) == (superuser, str(host.pk))
    assert event.data["via"] == "admin"
    assert event.data["base_url"] == "unix:///nonexistent/docker-2.sock"
    assert event.ip == "127.0.0.1"


def test_a_host_change_in_the_admin_is_audited_with_old_and_new_values(
    admin_client_, superuser, host
):
    url = reverse("admin:instances_host_change", args=[host.pk])
    form = host_form(name=host.name, base_url=host.base_url, memory_mb="4096", is_active=None)

    response = admin_client_.post(url, form)

    assert response.status_code == 302
    host.refresh_from_db()
    assert (host.memory_mb, host.is_active) == (4096, False)
    event = AuditEvent.objects.get(action="host.updated")
    assert event.actor == superuser
    assert event.data["changes"] == {
        "memory_mb": {"from": 8192, "to": 4096},
        "is_active": {"from": True, "to": False},
    }


def test_saving_a_host_unchanged_writes_no_audit_row(admin_client_, host):
    url = reverse("admin:instances_host_change", args=[host.pk])
    form = host_form(name=host.name, base_url=host.base_url, memory_mb=str(host.memory_mb))

    assert admin_client_.post(url, form).status_code == 302
    assert not AuditEvent.objects.filter(action="host.updated").exists()


def test_an_inverted_port_range_is_a_field_error(admin_client_, host):
    url = reverse("admin:instances_host_change", args=[host.pk])
    form = host_form(name=host.name, port_range_start="20000", port_range_end="19000")

    page = admin_client_.post(url, form)

    assert page.status_code == 200
    assert b"The last port must not be below the first port." in page.content
    assert not AuditEvent.objects.filter(action__startswith="host.").exists()


def test_an_unused_host_deleted_in_the_admin_is_audited_and_a_used_one_is_kept(
    admin_client_, org, host
):
    spare = Host.objects.create(name="spare", base_url="unix:///nonexistent/spare.sock")
    make_instance(org, host)

    admin_client_.post(reverse("admin:instances_host_delete", args=[spare.pk]), {"post": "yes"})
    admin_client_.post(reverse("admin:instances_host_delete", args=[host.pk]), {"post": "yes"})

    assert list(Host.objects.values_list("name", flat=True)) == [host.name]
    event = AuditEvent.objects.get(action="host.deleted")
    assert event.target_repr == "spare"


def test_the_host_changelist_offers_no_bulk_delete(admin_client_, host):
    page = admin_client_.get(reverse("admin:instances_host_changelist"))

    assert page.status_code == 200
    assert b"delete_selected" not in page.content


def test_a_swarm_hosts_page_lists_its_nodes_as_swarm_reported_them(admin_client_):
    host = Host.objects.create(name="swarm-1", kind=Host.Kind.SWARM, base_url="unix:///s.sock")
    node = {
        "id": "n1",
        "hostname": "cf-swarm-2",
        "address": "10.213.0.12",
        "engine_url": "unix:///run/clawfleet-swarm/node-2.sock",
        "role": "worker",
        "memory_bytes": 8 * 2**30,
        "availability": "active",
        "state": "ready",
    }
    services.host_nodes_sync(host=host, nodes=[node, {**node, "id": "n2", "hostname": "gone"}])
    services.host_nodes_sync(host=host, nodes=[node])  # n2 left the swarm

    page = admin_client_.get(reverse("admin:instances_host_change", args=[host.pk]))

    assert page.status_code == 200
    html = page.content.decode()
    assert "cf-swarm-2" in html and "unix:///run/clawfleet-swarm/node-2.sock" in html
    assert "8,192 MB" in html and "gone" not in html
    assert list(host.nodes.values_list("swarm_node_id", flat=True)) == ["n1"]
