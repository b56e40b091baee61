"""The audit page, a share's timeline, the CSV export; and pages never wait on Celery."""
from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection
from django.http import StreamingHttpResponse
from django.test import Client
from django.test.utils import CaptureQueriesContext

from shares import audit, services
from shares.audit_views import PAGE_SIZE, csv_cell
from shares.models import AuditEvent
from tests.conftest import PASSWORD
from tests.sharecore_fixtures import fetch

pytestmark = pytest.mark.django_db


def _at(moment: datetime, action: str = audit.LINK_VISITED, **fields) -> AuditEvent:
    fields.setdefault("actor_name", "anonymous")
    return AuditEvent.objects.create(created_at=moment, action=action, **fields)


@pytest.fixture
def auditor_client(db) -> Client:
    user = User.objects.create_user("audrey", "audrey@example.com", PASSWORD)
    user.groups.add(Group.objects.get_or_create(name="Auditors")[0])
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def staff_client(db) -> Client:
    user = User.objects.create_user("stella", "stella@example.com", PASSWORD, is_staff=True)
    client = Client()
    client.force_login(user)
    return client


def _rows(response) -> list[str]:
    import re

    return re.findall(r'data-event-id="(\d+)"', response.content.decode())


# --- who may see it ---------------------------------------------------------------------------

@pytest.mark.parametrize("url", ["/audit/", "/audit/export.csv", "/audit/share/1/"])
def test_it_refuses_staff_who_are_not_auditors_and_records_it(staff_client, url):
    response = staff_client.get(url)
    assert response.status_code == 403
    assert b"for administrators and members of the" in response.content
    event = AuditEvent.objects.get()
    assert (event.action, event.actor_name, event.details["what"]) == (audit.ACCESS_DENIED, "stella", "audit")


def test_auditors_and_admins_see_it_and_the_nav_link(auditor_client, admin_client):
    for client in (auditor_client, admin_client):
        response = client.get("/audit/")
        assert response.status_code == 200
        assert b'href="/audit/"' in response.content and b"Audit log" in response.content


def test_the_nav_link_is_hidden_from_others(alice_client):
    assert b"Audit log" not in alice_client.get("/").content


# --- listing, filters, paging ----------------------------------------------------------------------

def test_it_lists_newest_first_and_pages_by_id_without_counting(admin_client):
    base = datetime(2026, 3, 1, tzinfo=dt_timezone.utc)
    events = [_at(base + timedelta(seconds=i), key=f"k{i}") for i in range(PAGE_SIZE * 2 + 5)]
    with CaptureQueriesContext(connection) as queries:
        first = admin_client.get("/audit/")
    assert not any("COUNT(" in q["sql"].upper() for q in queries.captured_queries)
    ids = [int(i) for i in _rows(first)]
    assert ids == [e.id for e in reversed(events)][:PAGE_SIZE]
    assert f'before={ids[-1]}'.encode() in first.content
    second = admin_client.get(f"/audit/?before={ids[-1]}")
    third = admin_client.get(f"/audit/?before={_rows(second)[-1]}")
    assert len(_rows(second)) == PAGE_SIZE and len(_rows(third)) == 5
    assert b"Older events" not in third.content


def test_it_filters_by_user_action_bucket_prefix_and_text(admin_client, alice, bob):
    now = datetime(2026, 3, 1, 12, tzinfo=dt_timezone.utc)
    a = _at(now, audit.SHARE_CREATED, actor=alice, actor_name="alice", bucket="b1", key="team-a/Report.pdf")
    b = _at(now, audit.SHARE_CREATED, actor=bob, actor_name="bob", bucket="b2", key="team-b/report.pdf")
    c = _at(now, audit.LINK_VISITED, bucket="b1", key="team-a/other.bin")
    d = _at(now, audit.LOGIN_FAILED, actor_name="mallory")

    def ids(**query) -> set[int]:
        return {int(i) for i in _rows(admin_client.get("/audit/?" + urlencode(query)))}

    assert ids(user="alice") == {a.id}
    assert ids(user="mallory") == {d.id}  # no such account: the name snapshot
    assert ids(action=audit.SHARE_CREATED) == {a.id, b.id}
    assert ids(bucket="b1") == {a.id, c.id}
    assert ids(prefix="team-a/") == {a.id, c.id}
    assert ids(q="REPORT") == {a.id, b.id}
    assert ids(user="alice", action=audit.LINK_VISITED) == set()


def test_it_filters_by_dates_in_the_users_zone(admin_client):
    # 23:30 UTC on 1 March is already 2 March in Tokyo.
    late = _at(datetime(2026, 3, 1, 23, 30, tzinfo=dt_timezone.utc))
    early = _at(datetime(2026, 3, 1, 10, 0, tzinfo=dt_timezone.utc))
    admin_client.cookies["tz"] = "Asia/Tokyo"
    response = admin_client.get("/audit/?date_from=2026-03-02&date_to=2026-03-02")
    assert _rows(response) == [str(late.id)]
    admin_client.cookies["tz"] = "UTC"
    response = admin_client.get("/audit/?date_from=2026-03-01&date_to=2026-03-01")
    assert _rows(response) == [str(early.id), str(late.id)]  # newest first means by id


def test_it_explains_bad_filters(admin_client):
    response = admin_client.get("/audit/?date_from=2026-03-05&date_to=2026-03-01&before=x")
    assert response.status_code == 200
    assert "“From” must be on or before “To”." in response.content.decode()
    assert b"Enter a whole number." in response.content
    assert admin_client.get("/audit/export.csv?date_from=yesterday").status_code == 400


def test_it_shows_hostile_keys_escaped_and_control_characters_visibly(admin_client):
    _at(datetime(2026, 3, 1, tzinfo=dt_timezone.utc), key='<script>alert(1)</script>\n2026-01-01 admin share.created\u202e',
        user_agent="<b>ua</b>", details={"note": "<img src=x>"})
    html = admin_client.get("/audit/").content.decode()
    assert "<script>alert(1)" not in html and "<img src=x>" not in html and "<b>ua" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;\\u000a2026-01-01 admin share.created\\u202e" in html


# --- a share's timeline ---------------------------------------------------------------------------

def test_the_timeline_shows_created_each_visit_and_revoked(admin_client, alice, grants, s3_bucket, put_object):
    put_object("t.txt", b"hello")
    result = services.share_create(user=alice, bucket_name=s3_bucket.name, key="t.txt", expires_in=600)
    token = result.url.rsplit("/", 1)[-1]
    visitor = Client()
    assert fetch(visitor.get(f"/s/{token}")["Location"])[1] == b"hello"
    visitor.get(f"/s/{token}")
    services.share_revoke(share=result.share, user=alice)
    visitor.get(f"/s/{token}")
    html = admin_client.get(f"/audit/share/{result.share.id}/").content.decode()
    order = [html.index(a) for a in ("share.created", "link.visited", "share.revoked")]
    assert order == sorted(order)
    assert html.count("link.visited") == 3 and "&quot;outcome&quot;: &quot;revoked&quot;" in html
    assert admin_client.get("/audit/share/999999/").status_code == 404


# --- CSV ---------------------------------------------------------------------------------------------

def test_csv_cells_are_neutralised():
    assert [csv_cell(v) for v in ("=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", "a=b", "", None)] == [
        "'=1+1", "'+1", "'-1", "'@SUM(A1)", "'\tx", "'\rx", "a=b", "", ""]


def test_it_exports_filtered_csv_streamed_with_formulas_neutralised(admin_client):
    at = datetime(2026, 3, 1, tzinfo=dt_timezone.utc)
    hostile = _at(at, audit.SHARE_CREATED, actor_name="=HYPERLINK(\"http://evil\")", bucket="b1",
                  key="line1\nline2,\"quoted\"", details={"kind": "portal"})
    _at(at, audit.LINK_VISITED, bucket="b1", key="-2+3")
    _at(at, audit.SHARE_CREATED, bucket="b2", key="other")
    response = admin_client.get("/audit/export.csv?bucket=b1")
    assert isinstance(response, StreamingHttpResponse)
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="audit-')
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:6] == ["id", "time_utc", "actor", "action", "bucket", "key"]
    assert [r[5] for r in rows[1:]] == ["line1\nline2,\"quoted\"", "'-2+3"]
    assert rows[1][0] == str(hostile.id) and rows[1][2] == "'=HYPERLINK(\"http://evil\")"
    assert rows[1][1] == "2026-03-01T00:00:00.000000Z" and rows[1][9] == '{"kind": "portal"}'


# --- never blocked by Celery ------------------------------------------------------------------------

@pytest.fixture
def dead_broker(settings, monkeypatch):
    """The broker is down (nothing listens on port 1), and any attempt to
    enqueue fails the test loudly."""
    from celery import Celery

    from portal.celery import app

    # Read before changing settings: the first read of app.conf loads the Django
    # settings, and would otherwise "restore" the dead URL for every later test.
    previous = app.conf.broker_url
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    app.conf.broker_url = "redis://127.0.0.1:1/0"

    def refuse(*args, **kwargs):
        raise AssertionError("a request path tried to enqueue a Celery task")

    monkeypatch.setattr(Celery, "send_task", refuse)
    yield
    app.conf.broker_url = previous


def test_sharing_visits_and_the_audit_page_work_with_the_broker_down(
        dead_broker, alice, alice_client, admin_client, grants, s3_bucket, put_object):
    put_object("down.txt", b"still works")
    response = alice_client.post("/share/new?" + urlencode({"bucket": s3_bucket.name, "key": "down.txt"}),
                                 {"expiry": "3600", "kind": "portal", "custom_unit": "seconds"})
    assert response.status_code == 302, response.content[:3000]
    share = AuditEvent.objects.get(action=audit.SHARE_CREATED).share
    assert alice_client.get("/shares/").status_code == 200
    result_page = alice_client.get(response["Location"])
    assert result_page.status_code == 200
    import re

    token = re.search(r"/s/([A-Za-z0-9_\-]{20,})", result_page.content.decode()).group(1)
    visit = Client().get(f"/s/{token}")
    assert visit.status_code == 302 and fetch(visit["Location"])[1] == b"still works"
    page = admin_client.get("/audit/")
    assert page.status_code == 200 and f"#{share.id}".encode() in page.content
    assert admin_client.get("/audit/export.csv").status_code == 200
