"""The audit page in a real browser (Debian chromium through Playwright)."""
from __future__ import annotations

import csv
import io

import pytest
from django.contrib.auth.models import User

from shares import audit
from shares.models import AuditEvent
from tests.conftest import PASSWORD


@pytest.mark.browser
def test_an_admin_filters_by_user_and_action_and_downloads_the_csv(page, live_server, sign_in, admin_user, alice):
    AuditEvent.objects.create(action=audit.SHARE_CREATED, actor=alice, actor_name="alice", bucket="photos",
                              key="team-a/=cmd.xlsx")
    AuditEvent.objects.create(action=audit.SHARE_REVOKED, actor=alice, actor_name="alice", bucket="photos",
                              key="team-a/old.pdf")
    AuditEvent.objects.create(action=audit.SHARE_CREATED, actor_name="bob", bucket="photos", key="team-b/x.bin")
    sign_in(page, "admin")
    page.wait_for_url(f"{live_server.url}/")
    page.get_by_role("link", name="Audit log").click()
    page.wait_for_url(f"{live_server.url}/audit/")
    # The admin's own sign-in is the newest event.
    assert page.locator("tbody tr").first.inner_text().count("auth.login") == 1

    page.get_by_label("User", exact=True).fill("alice")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**/audit/?*user=alice*")
    assert page.locator("tbody tr").count() == 2

    page.get_by_label("Action", exact=True).select_option(audit.SHARE_CREATED)
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**action=share.created*")
    rows = page.locator("tbody tr")
    assert rows.count() == 1 and "team-a/=cmd.xlsx" in rows.first.inner_text()

    with page.expect_download() as info:
        page.get_by_role("link", name="Export CSV").click()
    download = info.value
    assert download.suggested_filename.startswith("audit-") and download.suggested_filename.endswith(".csv")
    with open(download.path(), encoding="utf-8") as handle:
        table = list(csv.reader(io.StringIO(handle.read())))
    assert [(r[2], r[3], r[5]) for r in table[1:]] == [("alice", "share.created", "team-a/=cmd.xlsx")]


@pytest.mark.browser
def test_a_staff_user_gets_403(page, live_server, sign_in, db):
    User.objects.create_user("stella", "stella@example.com", PASSWORD, is_staff=True)
    sign_in(page, "stella")
    page.wait_for_url(f"{live_server.url}/")
    assert page.get_by_role("link", name="Audit log").count() == 0
    response = page.goto(f"{live_server.url}/audit/")
    assert response.status == 403
    assert page.get_by_role("heading", name="Not allowed").is_visible()
    assert AuditEvent.objects.filter(action=audit.ACCESS_DENIED, actor_name="stella").count() == 1
