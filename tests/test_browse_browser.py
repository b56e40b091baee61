"""The browsing journey in a real browser (Playwright driving Debian's chromium)
against nanio: sign in → bucket → folder → next page → object detail."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from playwright.sync_api import expect


@pytest.mark.browser
def test_it_walks_from_sign_in_to_an_object_on_the_second_page(page, live_server, sign_in, s3_client, s3_bucket,
                                                               grants):
    keys = [f"photos/img {i:03d}.jpg" for i in range(130)] + ["readme.txt"]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda key: s3_client.put_object(Bucket=s3_bucket.name, Key=key, Body=b"jpeg",
                                                       ContentType="image/jpeg", Metadata={"camera": "x100"}), keys))

    sign_in(page, "alice")
    page.wait_for_url(f"{live_server.url}/")
    page.get_by_role("link", name="Test bucket").click()
    expect(page.get_by_role("heading", name="Test bucket")).to_be_visible()
    page.get_by_role("link", name="photos/").click()
    expect(page.get_by_role("heading", name="photos/")).to_be_visible()
    expect(page.get_by_role("link", name="img 000.jpg")).to_be_visible()
    expect(page.get_by_role("link", name="Share", exact=True)).to_have_count(100)

    page.get_by_role("link", name="Next").click()
    expect(page.get_by_role("link", name="img 100.jpg")).to_be_visible()
    expect(page.get_by_role("link", name="img 000.jpg")).to_have_count(0)
    expect(page.get_by_role("link", name="Next")).to_have_count(0)

    page.get_by_role("link", name="Previous").click()
    expect(page.get_by_role("link", name="img 000.jpg")).to_be_visible()
    page.get_by_role("link", name="Next").click()

    page.get_by_role("link", name="img 120.jpg").click()
    expect(page.get_by_role("heading", name="img 120.jpg")).to_be_visible()
    expect(page.get_by_role("row", name="Content type image/jpeg")).to_be_visible()
    expect(page.get_by_text("x-amz-meta-camera")).to_be_visible()
    share = page.get_by_role("link", name="Share", exact=True)
    assert share.get_attribute("href") == f"/share/new?bucket={s3_bucket.name}&key=photos%2Fimg+120.jpg"

    # The filter box narrows by name, server-side.
    page.get_by_role("navigation", name="Breadcrumbs").get_by_role("link", name="photos").click()
    page.get_by_label("Filter by name").fill("img 12")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_role("link", name="Share", exact=True)).to_have_count(10)
