"""share_create / share_revoke and the /s/<token> portal link, end to end on nanio
(which verifies SigV4 signatures and expiry: a link that downloads there works)."""
from __future__ import annotations

import datetime as dt
import logging
import urllib.parse

import pytest
import time_machine
from django.http import Http404
from django.test import Client, override_settings

from shares import audit, services
from shares.models import AuditEvent, Share
from tests.sharecore_fixtures import NANIO_REFUSED_KEYS, ODD_KEYS, fetch

pytestmark = pytest.mark.django_db(transaction=False)


def _visit(client: Client, url: str, method: str = "get"):
    path = urllib.parse.urlsplit(url).path
    return getattr(client, method)(path)


def _assert_no_secrets(url: str, caplog=None) -> None:
    """Neither the link, its signature nor its token may appear in the audit log or logs."""
    parts = urllib.parse.urlsplit(url)
    secrets_ = [url]
    query = urllib.parse.parse_qs(parts.query)
    secrets_ += query.get("X-Amz-Signature", [])
    if "/s/" in parts.path:
        secrets_.append(parts.path.rsplit("/", 1)[-1])
    dumped = " ".join(repr(row) for row in AuditEvent.objects.values())
    for secret in secrets_:
        assert secret not in dumped
        if caplog is not None:
            assert secret not in caplog.text


# --- direct links -----------------------------------------------------------------

@pytest.mark.parametrize("key", ODD_KEYS)
def test_it_shares_a_direct_link_that_downloads_the_bytes(alice, grants, s3_bucket, put_object, key):
    body = put_object(key)
    result = services.share_create(user=alice, bucket_name=s3_bucket.name, key=key, expires_in=3600, kind="direct")
    status, content, _ = fetch(result.url)
    assert (status, content) == (200, body)
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in result.url
    assert result.share.key == key and result.share.kind == "direct"


@pytest.mark.parametrize("key", ODD_KEYS)
def test_it_shares_a_portal_link_that_redirects_to_the_bytes(alice, grants, s3_bucket, put_object, client, key):
    body = put_object(key)
    result = services.share_create(user=alice, bucket_name=s3_bucket.name, key=key, expires_in=3600)
    assert "/s/" in result.url
    response = _visit(client, result.url)
    assert response.status_code == 302
    status, content, _ = fetch(response["Location"])
    assert (status, content) == (200, body)


def test_it_writes_the_share_and_one_audit_event(alice, grants, s3_bucket, put_object, caplog):
    caplog.set_level(logging.DEBUG)
    put_object("report.pdf")
    result = services.share_create(user=alice, bucket_name=s3_bucket.name, key="report.pdf", expires_in=7200,
                                   kind="direct", note="for the auditors")
    share = Share.objects.get()
    assert share.created_by == alice and share.expires_in == 7200 and share.note == "for the auditors"
    assert share.expires_at == share.requested_expires_at
    event = AuditEvent.objects.get(action=audit.SHARE_CREATED)
    assert event.share_id == share.pk and event.actor == alice and event.key == "report.pdf"
    assert event.details["kind"] == "direct" and event.details["expires_in"] == 7200
    _assert_no_secrets(result.url, caplog)


def test_it_rejects_a_tampered_direct_link(alice, grants, s3_bucket, put_object):
    put_object("secret.txt")
    result = services.share_create(user=alice, bucket_name=s3_bucket.name, key="secret.txt", expires_in=60,
                                   kind="direct")
    tampered = result.url.replace("secret.txt", "secret.txT")
    assert fetch(tampered)[0] == 403
    signature = urllib.parse.parse_qs(urllib.parse.urlsplit(result.url).query)["X-Amz-Signature"][0]
    flipped = result.url.replace(signature, ("0" if signature[0] != "0" else "1") + signature[1:])
    assert fetch(flipped)[0] == 403


def test_an_expired_direct_link_fails(alice, grants, s3_bucket, put_object):
    put_object("old.txt")
    # Signed two hours ago for one hour: nanio checks with the real clock.
    with time_machine.travel(dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=2), tick=False):
        result = services.share_create(user=alice, bucket_name=s3_bucket.name, key="old.txt", expires_in=3600,
                                       kind="direct")
    status, content, _ = fetch(result.url)
    assert status == 403
    assert result.share.current_status() == "expired"


def test_it_signs_the_content_disposition_in(alice, grants, s3_bucket):
    result = services.share_create(user=alice, bucket_name=s3_bucket.name, key='a/rép\r\n"ort.pdf',
                                   expires_in=60, kind="direct")
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(result.url).query)
    disposition = query["response-content-disposition"][0]
    assert disposition == "attachment; filename=\"r_p___ort.pdf\"; filename*=UTF-8''r%C3%A9p%0D%0A%22ort.pdf"


# --- bad input ---------------------------------------------------------------------------

@pytest.mark.parametrize("value", [0, -1, "0", "-1", "abc", "1e3", "3600.5", 3600.5, True, "true", pytest.param("9" * 5000, id="5000-digit-string"),
                                   pytest.param(10 ** 5000, id="5000-digit-int"), None, "", [3600]])
def test_it_rejects_bad_expiry_and_writes_nothing(alice, grants, s3_bucket, value):
    with pytest.raises(services.ShareError) as caught:
        services.share_create(user=alice, bucket_name=s3_bucket.name, key="x.txt", expires_in=value)
    assert caught.value.field == "expires_in" and caught.value.status == 400
    assert "expires_in" in caught.value.message
    assert not Share.objects.exists() and not AuditEvent.objects.exists()


def test_it_rejects_a_direct_link_over_a_week(alice, grants, s3_bucket):
    with pytest.raises(services.ShareError) as caught:
        services.share_create(user=alice, bucket_name=s3_bucket.name, key="x.txt", expires_in=604801, kind="direct")
    assert caught.value.message == "expires_in must be a whole number of seconds from 1 to 604800."
    assert not Share.objects.exists()


def test_it_allows_a_portal_link_longer_than_a_week(alice, grants, s3_bucket):
    s3_bucket.max_expiry = 30 * 86400
    s3_bucket.save()
    grants["alice"].max_expiry = 30 * 86400
    grants["alice"].save()
    result = services.share_create(user=alice, bucket_name=s3_bucket.name, key="x.txt", expires_in=30 * 86400)
    assert result.share.expires_in == 30 * 86400


def test_it_caps_expiry_at_the_grant_maximum(bob, grants, s3_bucket):
    with pytest.raises(services.ShareError) as caught:
        services.share_create(user=bob, bucket_name=s3_bucket.name, key="team-a/x.txt", expires_in=86401)
    assert caught.value.message == ("expires_in must be a whole number of seconds from 1 to 86400 "
                                    "(the longest link your grant allows).")


@pytest.mark.parametrize("field,kwargs", [
    ("kind", {"kind": "ftp"}),
    ("key", {"key": ""}),
    ("key", {"key": "x" * 1025}),
    ("note", {"note": "n" * 501}),
    ("max_downloads", {"max_downloads": 0}),
    ("max_downloads", {"max_downloads": "2.5"}),
    ("max_downloads", {"max_downloads": 3, "kind": "direct"}),
])
def test_it_rejects_other_bad_input_naming_the_field(alice, grants, s3_bucket, field, kwargs):
    arguments = {"user": alice, "bucket_name": s3_bucket.name, "key": "x.txt", "expires_in": 60, **kwargs}
    with pytest.raises(services.ShareError) as caught:
        services.share_create(**arguments)
    assert caught.value.field == field
    assert not Share.objects.exists()


# --- grants ----------------------------------------------------------------------------------

def test_it_checks_the_grant_prefix_and_records_the_denial(bob, grants, s3_bucket):
    with pytest.raises(services.ShareError) as caught:
        services.share_create(user=bob, bucket_name=s3_bucket.name, key="team-b/x.txt", expires_in=60)
    assert caught.value.status == 403
    assert not Share.objects.exists()
    event = AuditEvent.objects.get()
    assert event.action == audit.ACCESS_DENIED and event.details["what"] == "share" and event.actor == bob


def test_it_answers_404_for_a_bucket_the_user_cannot_see(charlie, grants, s3_bucket):
    with pytest.raises(services.ShareError) as caught:
        services.share_create(user=charlie, bucket_name=s3_bucket.name, key="x.txt", expires_in=60)
    assert caught.value.status == 404
    assert AuditEvent.objects.get().action == audit.ACCESS_DENIED


def test_it_refuses_a_grant_without_can_share(bob, grants, s3_bucket):
    grants["bob"].can_share = False
    grants["bob"].save()
    with pytest.raises(services.ShareError) as caught:
        services.share_create(user=bob, bucket_name=s3_bucket.name, key="team-a/x.txt", expires_in=60)
    assert caught.value.status == 403


def test_it_lets_bob_share_inside_his_folder(bob, grants, s3_bucket):
    result = services.share_create(user=bob, bucket_name=s3_bucket.name, key="team-a/x.txt", expires_in=86400)
    assert result.share.created_by == bob


# --- real expiry under temporary credentials ------------------------------------------------

@pytest.fixture
def temporary_credentials(local_s3, monkeypatch):
    """Credentials with a session token that end in two hours (as from STS)."""
    from shares import s3

    ends = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=2)).replace(microsecond=0)
    monkeypatch.setenv("AWS_SESSION_TOKEN", "session-token-value")
    monkeypatch.setenv("AWS_CREDENTIAL_EXPIRATION", ends.isoformat())
    s3.clear_clients()
    yield ends
    monkeypatch.delenv("AWS_SESSION_TOKEN")
    monkeypatch.delenv("AWS_CREDENTIAL_EXPIRATION")
    s3.clear_clients()


def test_a_direct_link_cannot_outlive_temporary_credentials(alice, grants, s3_bucket, temporary_credentials, caplog):
    result = services.share_create(user=alice, bucket_name=s3_bucket.name, key="x.txt", expires_in=86400,
                                   kind="direct")
    share = result.share
    assert share.requested_expires_at - share.created_at == dt.timedelta(days=1)
    assert abs((share.expires_at - temporary_credentials).total_seconds()) <= 2
    assert "portal link" in result.warning and "sooner than the 1 day you asked for" in result.warning
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(result.url).query)
    assert int(query["X-Amz-Expires"][0]) <= 7200
    event = AuditEvent.objects.get(action=audit.SHARE_CREATED)
    assert "session-token-value" not in repr(event.details)
    assert "session-token-value" not in caplog.text


def test_a_portal_link_is_not_capped_by_the_credentials(alice, grants, s3_bucket, temporary_credentials):
    result = services.share_create(user=alice, bucket_name=s3_bucket.name, key="x.txt", expires_in=86400)
    assert result.warning is None
    assert result.share.expires_at == result.share.requested_expires_at


def test_a_short_direct_link_has_no_warning(alice, grants, s3_bucket, temporary_credentials):
    result = services.share_create(user=alice, bucket_name=s3_bucket.name, key="x.txt", expires_in=3600,
                                   kind="direct")
    assert result.warning is None


# --- portal links ----------------------------------------------------------------------------------

def test_the_token_is_long_and_only_its_hash_is_stored(alice, grants, s3_bucket):
    result = services.share_create(user=alice, bucket_name=s3_bucket.name, key="x.txt", expires_in=60)
    token = result.url.rsplit("/", 1)[-1]
    assert len(token) >= 43  # 256 bits, base64url
    share = Share.objects.get()
    assert token not in (share.token_digest, share.token_nonce)
    assert services.portal_url(share) == result.url  # "copy again" recomputes the same link


def test_the_token_needs_the_key_kept_outside_the_database(alice, grants, s3_bucket, client):
    result = services.share_create(user=alice, bucket_name=s3_bucket.name, key="x.txt", expires_in=60)
    with override_settings(LINK_TOKEN_KEY="another-key"):
        assert services.portal_url(Share.objects.get()) != result.url


def test_a_visit_is_audited_without_the_token(alice, grants, s3_bucket, put_object, client, caplog):
    caplog.set_level(logging.DEBUG)
    put_object("x.txt")
    result = services.share_create(user=alice, bucket_name=s3_bucket.name, key="x.txt", expires_in=60)
    response = client.get(urllib.parse.urlsplit(result.url).path, HTTP_USER_AGENT="Curl/8")
    assert response.status_code == 302
    assert response["Cache-Control"] == "no-store"
    assert response["Referrer-Policy"] == "no-referrer"
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(response["Location"]).query)
    assert query["X-Amz-Expires"] == ["60"]
    event = AuditEvent.objects.get(action=audit.LINK_VISITED)
    assert event.details == {"outcome": "redirected"} and event.user_agent == "Curl/8" and event.ip == "127.0.0.1"
    assert Share.objects.get().download_count == 1
    _assert_no_secrets(result.url, caplog)
    _assert_no_secrets(response["Location"], caplog)


def test_a_revoked_portal_link_answers_410_at_once(alice, grants, s3_bucket, put_object, client):
    put_object("x.txt")
    result = services.share_create(user=alice, bucket_name=s3_bucket.name, key="x.txt", expires_in=3600)
    assert _visit(client, result.url).status_code == 302
    assert services.share_revoke(share=result.share, user=alice) is True
    response = _visit(client, result.url)
    assert response.status_code == 410
    assert b"This link has been revoked" in response.content
    assert services.share_revoke(share=result.share, user=alice) is False  # already revoked: no second event
    assert AuditEvent.objects.filter(action=audit.SHARE_REVOKED).count() == 1
    outcomes = list(AuditEvent.objects.filter(action=audit.LINK_VISITED).order_by("id")
                    .values_list("details__outcome", flat=True))
    assert outcomes == ["redirected", "revoked"]


def test_a_download_limit_of_two_allows_exactly_two(alice, grants, s3_bucket, put_object, client):
    body = put_object("x.txt")
    result = services.share_create(user=alice, bucket_name=s3_bucket.name, key="x.txt", expires_in=3600,
                                   max_downloads=2)
    answers = [_visit(client, result.url) for _ in range(3)]
    assert [a.status_code for a in answers] == [302, 302, 410]
    assert fetch(answers[1]["Location"])[1] == body
    assert b"used up" in answers[2].content
    share = Share.objects.get()
    assert share.download_count == 2 and share.current_status() == "used_up"


def test_a_download_limit_holds_when_visitors_race(alice, grants, s3_bucket, put_object, client, monkeypatch):
    """Racing visitors all read the share before any of them counts: the
    conditional UPDATE alone must stop the third. (Simulated by making the
    read-side check always pass; SQLite cannot run truly parallel writers here.)"""
    from shares import links

    put_object("x.txt")
    result = services.share_create(user=alice, bucket_name=s3_bucket.name, key="x.txt", expires_in=3600,
                                   max_downloads=2)
    real_outcome = links._outcome_of
    monkeypatch.setattr(links, "_outcome_of", lambda share, now: None)
    codes = [_visit(client, result.url).status_code for _ in range(4)]
    monkeypatch.setattr(links, "_outcome_of", real_outcome)
    assert codes == [302, 302, 410, 410]
    assert Share.objects.get().download_count == 2


def test_a_head_request_does_not_count_a_download(alice, grants, s3_bucket, client):
    result = services.share_create(user=alice, bucket_name=s3_bucket.name, key="x.txt", expires_in=3600,
                                   max_downloads=1)
    assert _visit(client, result.url, "head").status_code == 302
    assert Share.objects.get().download_count == 0
    assert _visit(client, result.url).status_code == 302
    assert _visit(client, result.url).status_code == 410


def test_an_expired_portal_link_answers_410(alice, grants, s3_bucket, client):
    result = services.share_create(user=alice, bucket_name=s3_bucket.name, key="x.txt", expires_in=60)
    with time_machine.travel(dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=2)):
        response = _visit(client, result.url)
    assert response.status_code == 410
    assert b"This link has expired" in response.content
    assert AuditEvent.objects.get(action=audit.LINK_VISITED).details == {"outcome": "expired"}


def test_an_unknown_token_answers_404(client, db):
    assert client.get("/s/" + "A" * 43).status_code == 404
    assert client.get("/s/short").status_code == 404


def test_a_portal_link_rejects_post_without_logging_the_token(alice, grants, s3_bucket, client, caplog):
    caplog.set_level(logging.DEBUG)
    result = services.share_create(user=alice, bucket_name=s3_bucket.name, key="x.txt", expires_in=60)
    path = urllib.parse.urlsplit(result.url).path
    response = client.post(path)
    assert response.status_code == 405 and response["Allow"] == "GET, HEAD"
    assert client.get(path[:-3] + "AAA").status_code == 404
    assert path.rsplit("/", 1)[-1] not in caplog.text and path[:-3] not in caplog.text


# --- selectors ------------------------------------------------------------------------------------

def test_get_share_for_user_hides_other_peoples_shares(alice, bob, admin_user, grants, s3_bucket):
    result = services.share_create(user=alice, bucket_name=s3_bucket.name, key="x.txt", expires_in=60)
    assert services.get_share_for_user(alice, result.share.pk) == result.share
    assert services.get_share_for_user(admin_user, str(result.share.pk)) == result.share
    for user, share_id in [(bob, result.share.pk), (alice, 999999), (alice, "abc"), (alice, "1 OR 1=1")]:
        with pytest.raises(Http404):
            services.get_share_for_user(user, share_id)
    assert list(services.shares_for_user(alice)) == [result.share]
    assert list(services.shares_for_user(bob)) == []
    assert services.status_of(result.share) == "active"


@pytest.mark.parametrize("key", NANIO_REFUSED_KEYS)
def test_it_signs_dot_and_slash_keys_verbatim(alice, grants, s3_bucket, key):
    """nanio refuses these keys, S3 does not: the signed path must carry the very key."""
    result = services.share_create(user=alice, bucket_name=s3_bucket.name, key=key, expires_in=60, kind="direct")
    path = urllib.parse.urlsplit(result.url).path
    assert urllib.parse.unquote(path) == f"/{s3_bucket.name}/{key}"
    assert result.share.key == key


def test_the_fast_grant_check_agrees_with_grants_access_for(alice, bob, charlie, admin_user, grants, s3_bucket):
    from django.contrib.auth.models import Group

    from shares import grants as grants_module
    from shares.models import Grant

    # A narrower group grant that cannot share, and a longer user grant, to make "best" matter.
    team = Group.objects.get(name="Team")
    Grant.objects.create(bucket=s3_bucket, group=team, prefix="locked", can_share=False, max_expiry=60)
    Grant.objects.create(bucket=s3_bucket, user=bob, prefix="team-a/deep/", can_share=True, max_expiry=3600 * 30)
    for user in (alice, bob, charlie, admin_user):
        for key in ("x", "team-a/x", "team-a/deep/x", "team-ab/x", "locked/x", "lockedx"):
            bucket, access = services._bucket_and_access(user, s3_bucket.name, key)
            expected = grants_module.access_for(user, s3_bucket, key)
            assert access == expected, (user, key)
            assert (bucket is None) == (not grants_module.grant_prefixes(user, s3_bucket))


def test_a_link_both_used_up_and_expired_gives_the_visitor_the_reason_my_shares_gives(alice, grants, s3_bucket,
                                                                                      client):
    result = services.share_create(user=alice, bucket_name=s3_bucket.name, key="x.txt", expires_in=60,
                                   max_downloads=1)
    assert _visit(client, result.url).status_code == 302
    with time_machine.travel(dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=2)):
        response = _visit(client, result.url)
        status = Share.objects.get().current_status()
    assert response.status_code == 410 and status == Share.Status.USED_UP
    assert b"This link has been used up" in response.content
    last = AuditEvent.objects.filter(action=audit.LINK_VISITED).order_by("-id").first()
    assert last.details == {"outcome": "used_up"}
