"""Sessions (filters, ordering, cursor pages, one transcript page) and backups."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.utils import timezone

from instances.models import Operation
from sessions_mgmt.models import Session

from .conftest import API, make_backup, make_instance, make_session, token_client


def keys(response):
    assert response.status_code == 200, response.content[:300]
    return [s["session_key"] for s in response.json()["results"]]


def test_sessions_filter_by_instance_channel_status_and_activity_dates(world):
    other = make_instance(world.alice_org, "other-bot")
    now = timezone.now()
    make_session(other, "old", channel="slack", last_activity_at=now - dt.timedelta(days=10))
    make_session(other, "archived", status=Session.Status.ARCHIVED, last_activity_at=now)
    api = token_client(world.alice_secret)
    assert set(keys(api.get(f"{API}/sessions?instance={other.pk}"))) == {"old", "archived"}
    assert keys(api.get(f"{API}/sessions?channel=slack")) == ["old"]
    assert keys(api.get(f"{API}/sessions?status=archived")) == ["archived"]
    since = (now - dt.timedelta(days=1)).date().isoformat()
    assert "old" not in keys(api.get(f"{API}/sessions?from={since}"))
    until = (now - dt.timedelta(days=5)).isoformat().replace("+00:00", "Z")
    assert keys(api.get(f"{API}/sessions", {"to": until})) == ["old"]


def test_an_invalid_date_filter_is_a_400_on_that_field(world):
    response = token_client(world.alice_secret).get(f"{API}/sessions?from=yesterday")
    assert response.status_code == 400
    assert "from" in response.json()["error"]["fields"]


def test_sessions_order_by_cost_or_recency(world):
    now = timezone.now()
    for i, cost in enumerate(["0.5", "2.0", "1.0"]):
        make_session(
            world.running,
            f"s{i}",
            cost_usd=Decimal(cost),
            last_activity_at=now - dt.timedelta(minutes=i + 1),
        )
    api = token_client(world.alice_secret)
    by_cost = keys(api.get(f"{API}/sessions?ordering=-cost&instance={world.running.pk}"))
    assert by_cost[:3] == ["s1", "s2", "s0"]
    by_recency = keys(api.get(f"{API}/sessions?instance={world.running.pk}"))
    assert by_recency[1:] == ["s0", "s1", "s2"]


def test_sessions_come_in_cursor_pages_that_cover_everything_once(world):
    now = timezone.now()
    for i in range(7):
        make_session(world.stopped, f"p{i}", last_activity_at=now - dt.timedelta(minutes=i))
    api = token_client(world.alice_secret)
    seen, url = [], f"{API}/sessions?limit=3&instance={world.stopped.pk}"
    while url:
        body = api.get(url).json()
        assert set(body) == {"next", "previous", "results"}
        seen += [s["session_key"] for s in body["results"]]
        url = body["next"]
    assert seen == [f"p{i}" for i in range(7)]


def test_a_bad_cursor_is_a_404_in_the_error_shape(world):
    response = token_client(world.alice_secret).get(f"{API}/sessions?cursor=garbage")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_a_session_comes_with_one_page_of_its_transcript(world, transcript_stub):
    api = token_client(world.alice_secret)
    body = api.get(f"{API}/sessions/{world.session.pk}").json()
    assert body["transcript"]["messages"][0]["text"] == "hello"
    assert body["transcript"]["before"] == 10 and body["transcript_error"] is None
    older = api.get(f"{API}/sessions/{world.session.pk}?before=10").json()
    assert older["transcript"]["before"] is None
    assert transcript_stub[-1]["before"] == 10
    assert transcript_stub[-1]["session_key"] == world.session.session_key


def test_a_negative_transcript_cursor_is_a_400(world, transcript_stub):
    response = token_client(world.alice_secret).get(f"{API}/sessions/{world.session.pk}?before=-1")
    assert response.status_code == 400


def test_without_the_transcript_permission_the_session_comes_without_it(
    world, make_token, transcript_stub
):
    _, secret = make_token(world.alice_org, ("operate",))
    body = token_client(secret).get(f"{API}/sessions/{world.session.pk}").json()
    assert body["transcript"] is None and "transcripts" in body["transcript_error"]
    assert transcript_stub == []


def test_a_transcript_of_a_stopped_instance_says_why_it_is_missing(world):
    session = make_session(world.stopped, "stopped-session")
    body = token_client(world.alice_secret).get(f"{API}/sessions/{session.pk}").json()
    assert body["transcript"] is None
    assert "Start the instance" in body["transcript_error"]


def test_a_backup_request_answers_202_with_the_backup_operation(world):
    response = token_client(world.alice_secret).post(
        f"{API}/backups", {"instance": str(world.running.pk)}, format="json"
    )
    assert response.status_code == 202
    assert response.json()["kind"] == "backup"
    assert response.json()["params"] == {"kind": "manual"}


def test_backing_up_another_organizations_instance_is_refused_without_saying_it_exists(world):
    response = token_client(world.charlie_secret).post(
        f"{API}/backups", {"instance": str(world.running.pk)}, format="json"
    )
    # A 404 like every other endpoint gives for another organization's id (and an unknown one).
    assert response.status_code == 404
    assert response.json()["error"] == {"code": "not_found", "message": "No such instance."}
    assert not Operation.objects.filter(kind="backup").exists()


def test_a_restore_answers_202_and_a_failed_backup_cannot_be_restored(world):
    api = token_client(world.alice_secret)
    response = api.post(f"{API}/backups/{world.backup.pk}/restore")
    assert response.status_code == 202 and response.json()["kind"] == "restore"
    failed = make_backup(world.stopped, state="failed")
    response = api.post(f"{API}/backups/{failed.pk}/restore")
    assert response.status_code == 400
    assert "backup" in response.json()["error"]["fields"]


def test_backups_filter_by_instance_and_hide_storage_details(world):
    make_backup(world.stopped)
    api = token_client(world.alice_secret)
    rows = api.get(f"{API}/backups?instance={world.stopped.pk}").json()["results"]
    assert [b["instance_name"] for b in rows] == ["alice-stopped"]
    assert "storage_name" not in rows[0] and "manifest" not in rows[0]


def test_manual_backups_past_the_hourly_limit_are_a_429_with_retry_after(world):
    from tests.factories import OperationFactory

    for _ in range(6):
        OperationFactory(instance=world.running, kind="backup", params={"kind": "manual"})
    response = token_client(world.alice_secret).post(
        f"{API}/backups", {"instance": str(world.running.pk)}, format="json"
    )
    assert response.status_code == 429
    assert "Too many manual backups" in response.json()["error"]["message"]
    assert int(response["Retry-After"]) > 0
