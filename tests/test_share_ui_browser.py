"""The acceptance journey in a real browser (Playwright driving Debian's
chromium) against nanio, which verifies signatures: the copied link really
downloads the file, and stops at once when revoked."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.sharecore_fixtures import fetch
from shares.models import Share

BODY = "quarterly numbers, ünïcødé\n".encode()


@pytest.mark.browser
def test_it_shares_copies_downloads_and_revokes_a_link(page, live_server, sign_in, s3_client, s3_bucket, grants):
    key = "reports/q3 numbers.txt"
    s3_client.put_object(Bucket=s3_bucket.name, Key=key, Body=BODY)

    sign_in(page, "alice")
    page.wait_for_url(f"{live_server.url}/")
    # Buckets -> bucket -> folder -> the file's "Share" button.
    page.get_by_role("link", name="Test bucket").click()
    page.get_by_role("link", name=re.compile(r"^reports")).click()
    row = page.get_by_role("row").filter(has_text="q3 numbers.txt")
    row.get_by_role("link", name="Share").click()

    expect(page.get_by_role("heading", name="Share “q3 numbers.txt”")).to_be_visible()
    page.get_by_label("1 day").check()
    page.get_by_label("Note (optional)").fill("for the board")
    page.get_by_role("button", name="Create link").click()

    expect(page.get_by_role("heading", name="Your link is ready")).to_be_visible()
    expect(page.get_by_role("img", name="QR code of the link")).to_be_visible()
    page.get_by_role("button", name="Copy link").click()
    expect(page.get_by_role("status").filter(has_text="Copied")).to_be_visible()
    link = page.evaluate("navigator.clipboard.readText()")
    assert link.startswith(f"{live_server.url}/s/")

    # The recipient: no session, follows the 302 to nanio and gets the bytes.
    assert fetch(link, follow=True)[:2] == (200, BODY)

    page.get_by_role("navigation", name="Main").get_by_role("link", name="My shares").click()
    row = page.get_by_role("row").filter(has_text="q3 numbers.txt")
    expect(row.get_by_text("Active")).to_be_visible()
    row.get_by_role("button", name="Revoke").click()
    expect(page.get_by_role("heading", name="Revoke this link?")).to_be_visible()
    page.get_by_role("button", name="Revoke").click()
    expect(page.get_by_text("It stops working at once")).to_be_visible()
    expect(page.get_by_role("row").filter(has_text="q3 numbers.txt").get_by_text("Revoked")).to_be_visible()

    status, _, _ = fetch(link)
    assert status == 410
    assert Share.objects.get().revoked_at is not None


@pytest.mark.browser
def test_it_copies_a_link_again_from_my_shares(page, live_server, sign_in, s3_client, s3_bucket, grants):
    key = "notes.txt"
    s3_client.put_object(Bucket=s3_bucket.name, Key=key, Body=b"notes")
    sign_in(page, "alice")
    page.wait_for_url(f"{live_server.url}/")
    page.goto(f"{live_server.url}/share/new?bucket={s3_bucket.name}&key={key}")
    page.get_by_role("button", name="Create link").click()
    expect(page.get_by_role("heading", name="Your link is ready")).to_be_visible()
    first = page.get_by_label("Portal link").input_value()

    page.goto(f"{live_server.url}/shares/")
    page.get_by_role("button", name="Copy link").click()
    expect(page.get_by_role("status").filter(has_text="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == first


@pytest.mark.browser
def test_it_copies_with_the_select_fallback_when_there_is_no_clipboard_api(
        page, context, live_server, sign_in, s3_client, s3_bucket, grants):
    s3_client.put_object(Bucket=s3_bucket.name, Key="notes.txt", Body=b"notes")
    # An old browser, or plain http on an intranet: no navigator.clipboard.
    page.add_init_script("Object.defineProperty(Navigator.prototype, 'clipboard', {get: () => undefined});")
    sign_in(page, "alice")
    page.wait_for_url(f"{live_server.url}/")
    page.goto(f"{live_server.url}/share/new?bucket={s3_bucket.name}&key=notes.txt")
    page.get_by_role("button", name="Create link").click()
    link = page.get_by_label("Portal link").input_value()
    page.get_by_role("button", name="Copy link").click()
    expect(page.get_by_role("status").filter(has_text="Copied")).to_be_visible()

    reader = context.new_page()  # a page that still has the Clipboard API
    reader.goto(f"{live_server.url}/profile/")
    assert reader.evaluate("navigator.clipboard.readText()") == link
