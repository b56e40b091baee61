"""A portal link's path is its token: no log line may carry it, whatever path
under /s/ a client asks for and whichever Django logger writes about it."""
from __future__ import annotations

import logging
import urllib.parse

import pytest
from django.test import Client
from django.utils.log import log_response

from shares import services
from shares.logging import RedactLinkTokens, redact
from shares.models import Share
from tests.sharecore_fixtures import fetch

pytestmark = pytest.mark.django_db


@pytest.fixture
def link(alice, grants, s3_bucket, put_object):
    body = put_object("report.pdf")
    result = services.share_create(user=alice, bucket_name=s3_bucket.name, key="report.pdf", expires_in=3600)
    path = urllib.parse.urlsplit(result.url).path
    return path, path.rsplit("/", 1)[-1], body


def _assert_token_not_logged(token: str, caplog) -> None:
    assert token not in caplog.text
    assert token[:20] not in caplog.text  # nor a recognisable part of it


def test_a_link_with_a_trailing_slash_works_like_the_link(link, client, caplog):
    caplog.set_level(logging.DEBUG)
    path, token, body = link
    response = client.get(path + "/")
    assert response.status_code == 302 and response["Cache-Control"] == "no-store"
    assert fetch(response["Location"])[:2] == (200, body)
    assert Share.objects.get().download_count == 1
    _assert_token_not_logged(token, caplog)


def test_a_deeper_path_under_a_link_is_a_clean_404_without_the_token_in_the_logs(link, client, caplog):
    caplog.set_level(logging.DEBUG)
    path, token, _ = link
    for deeper in (path + "/x", path + "/x/y", path + "//"):
        response = client.get(deeper)
        assert response.status_code == 404
        assert b"Link not found" in response.content and response["Cache-Control"] == "no-store"
    assert Share.objects.get().download_count == 0
    _assert_token_not_logged(token, caplog)


def test_a_post_to_a_link_answers_405_without_the_token_in_the_logs(link, caplog):
    caplog.set_level(logging.DEBUG)
    path, token, _ = link
    # CSRF enforced, as a real browser or script meets it: its refusal would log the path.
    response = Client(enforce_csrf_checks=True).post(path)
    assert response.status_code == 405 and response["Allow"] == "GET, HEAD"
    assert Share.objects.get().download_count == 0
    _assert_token_not_logged(token, caplog)


def test_djangos_not_found_and_not_allowed_lines_are_redacted(caplog, rf):
    """Any view that answers 404/405 under /s/ through Django's own logging."""
    caplog.set_level(logging.DEBUG)
    token = "Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4cXV1eHF1dXg"
    for status in (404, 405):
        request = rf.get(f"/s/{token}/x")
        response = type("R", (), {"status_code": status, "reason_phrase": "Not Found", "_has_been_logged": False})()
        log_response("%s: %s", response.reason_phrase, request.path, response=response, request=request)
    logging.getLogger("django.server").info('"%s" %s %s', f"GET /s/{token} HTTP/1.1", 404, 179)
    assert token not in caplog.text
    assert caplog.text.count("/s/[redacted]") == 3


def test_the_filter_redacts_paths_and_full_urls_in_messages_and_arguments():
    assert redact("Not Found: /s/abc_DEF-123/x") == "Not Found: /s/[redacted]/x"
    assert redact("see https://portal.example/s/abc?x=1") == "see https://portal.example/s/[redacted]?x=1"
    assert redact("/shares/12/") == "/shares/12/"
    record = logging.LogRecord("django.request", logging.WARNING, __file__, 1, "%(p)s", None, None)
    record.args = {"p": "/s/secret"}
    assert RedactLinkTokens().filter(record) and record.getMessage() == "/s/[redacted]"
