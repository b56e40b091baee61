"""The JSON API, personal API tokens, and the `presign` / `create_api_token` commands."""
from __future__ import annotations

import datetime as dt
import io
import json
import logging
import urllib.parse

import pytest
import time_machine
from django.core.management import call_command
from django.test import Client

from shares import audit, s3, services, tokens
from shares.models import ApiToken, AuditEvent, Bucket, Share
from tests.sharecore_fixtures import ODD_KEYS, fetch

pytestmark = pytest.mark.django_db


def post_json(client: Client, path: str, data, **extra):
    body = data if isinstance(data, (str, bytes)) else json.dumps(data)
    return client.post(path, body, content_type="application/json", **extra)


@pytest.fixture
def alice_token(alice) -> str:
    return tokens.create_api_token(alice, "laptop")[1]


@pytest.fixture
def bearer_client(alice_token) -> Client:
    """No session, no CSRF cookie: only the Bearer header (and CSRF enforced, as a browser would)."""
    return Client(enforce_csrf_checks=True, HTTP_AUTHORIZATION=f"Bearer {alice_token}")


# --- POST /api/shares --------------------------------------------------------------------

def test_it_creates_a_portal_link_that_downloads(bearer_client, grants, s3_bucket, put_object, client):
    body = put_object("docs/report 2024.pdf")
    response = post_json(bearer_client, "/api/shares",
                         {"bucket": s3_bucket.name, "key": "docs/report 2024.pdf", "expires_in": 3600})
    assert response.status_code == 201
    data = response.json()
    assert set(data) == {"id", "url", "kind", "expires_at", "requested_expires_at"}
    assert data["kind"] == "portal"
    redirect = client.get(urllib.parse.urlsplit(data["url"]).path)
    assert fetch(redirect["Location"])[1] == body
    event = AuditEvent.objects.get(action=audit.SHARE_CREATED)
    assert event.actor.username == "alice" and event.share_id == data["id"]


def test_it_creates_a_direct_link_that_downloads(bearer_client, grants, s3_bucket, put_object):
    body = put_object("ünï code+%.txt")
    response = post_json(bearer_client, "/api/shares", {"bucket": s3_bucket.name, "key": "ünï code+%.txt",
                                                         "expires_in": "600", "kind": "direct"})
    assert response.status_code == 201
    assert fetch(response.json()["url"])[1] == body


@pytest.mark.parametrize("value", [0, -1, 604801, "abc", "1e3", 1e3, "3600.5", 3600.5, True, "true", None])
def test_it_rejects_bad_expiry_with_400_naming_the_field(bearer_client, grants, s3_bucket, value):
    response = post_json(bearer_client, "/api/shares",
                         {"bucket": s3_bucket.name, "key": "x", "expires_in": value, "kind": "direct"})
    assert response.status_code == 400
    assert response.json()["field"] == "expires_in" and "expires_in" in response.json()["error"]
    assert not Share.objects.exists()


def test_it_rejects_a_5000_digit_expiry(bearer_client, grants, s3_bucket):
    raw = '{"bucket": "%s", "key": "x", "expires_in": %s}' % (s3_bucket.name, "9" * 5000)
    response = post_json(bearer_client, "/api/shares", raw)
    assert response.status_code == 400 and response.json()["field"] == "expires_in"
    assert not Share.objects.exists()


@pytest.mark.parametrize("missing", ["bucket", "key", "expires_in"])
def test_it_rejects_a_missing_field(bearer_client, grants, s3_bucket, missing):
    data = {"bucket": s3_bucket.name, "key": "x", "expires_in": 60}
    del data[missing]
    response = post_json(bearer_client, "/api/shares", data)
    assert response.status_code == 400 and response.json()["field"] == missing


@pytest.mark.parametrize("raw", ["{not json", "[1, 2]", "", '"text"', b"\xff\xfe"])
def test_it_rejects_malformed_json(bearer_client, grants, raw):
    response = post_json(bearer_client, "/api/shares", raw)
    assert response.status_code == 400
    assert response.json()["error"] == "The request body must be a JSON object."


def test_it_answers_403_without_a_grant(bob, grants, s3_bucket):
    token = tokens.create_api_token(bob, "t")[1]
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    response = post_json(client, "/api/shares", {"bucket": s3_bucket.name, "key": "team-b/x", "expires_in": 60})
    assert response.status_code == 403
    assert response.json() == {"error": "You have no grant that covers this object."}
    assert AuditEvent.objects.filter(action=audit.ACCESS_DENIED).count() == 1


def test_it_answers_404_for_an_unknown_bucket(bearer_client, grants):
    response = post_json(bearer_client, "/api/shares", {"bucket": "nope-nope", "key": "x", "expires_in": 60})
    assert response.status_code == 404


def test_it_answers_401_without_credentials(client, db):
    response = post_json(client, "/api/shares", {})
    assert response.status_code == 401 and "error" in response.json()
    assert client.get("/api/shares").status_code == 401


def test_it_answers_401_for_a_deleted_token(alice, alice_token, grants):
    tokens.delete_api_token(alice, ApiToken.objects.get().pk)
    response = Client(HTTP_AUTHORIZATION=f"Bearer {alice_token}").get("/api/shares")
    assert response.status_code == 401


def test_it_answers_405_in_json(bearer_client, alice_client, grants):
    response = bearer_client.get("/api/shares/1/revoke")
    assert response.status_code == 405 and response["Allow"] == "POST"
    assert "error" in response.json()
    assert alice_client.delete("/api/shares").status_code == 405


def test_a_session_post_without_csrf_is_refused(csrf_client, grants, s3_bucket):
    response = post_json(csrf_client, "/api/shares", {"bucket": s3_bucket.name, "key": "x", "expires_in": 60})
    assert response.status_code == 403 and "CSRF" in response.json()["error"]
    assert not Share.objects.exists()


def test_a_session_post_with_csrf_works(csrf_client, grants, s3_bucket):
    csrf_client.get("/")  # sets the csrftoken cookie
    token = csrf_client.cookies["csrftoken"].value
    response = post_json(csrf_client, "/api/shares", {"bucket": s3_bucket.name, "key": "x", "expires_in": 60},
                         HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 201


def test_a_bearer_post_needs_no_csrf(bearer_client, grants, s3_bucket):
    response = post_json(bearer_client, "/api/shares", {"bucket": s3_bucket.name, "key": "x", "expires_in": 60})
    assert response.status_code == 201


def test_it_warns_when_credentials_end_first(bearer_client, grants, s3_bucket, monkeypatch):
    ends = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
    monkeypatch.setenv("AWS_SESSION_TOKEN", "tok")
    monkeypatch.setenv("AWS_CREDENTIAL_EXPIRATION", ends.isoformat())
    s3.clear_clients()
    try:
        response = post_json(bearer_client, "/api/shares", {"bucket": s3_bucket.name, "key": "x",
                                                             "expires_in": 86400, "kind": "direct"})
    finally:
        monkeypatch.delenv("AWS_SESSION_TOKEN")
        monkeypatch.delenv("AWS_CREDENTIAL_EXPIRATION")
        s3.clear_clients()
    data = response.json()
    assert response.status_code == 201 and "portal link" in data["warning"]
    assert data["expires_at"] < data["requested_expires_at"]


# --- GET /api/shares and revoke ---------------------------------------------------------------

def test_it_lists_only_the_callers_shares_paged(alice, bob, grants, s3_bucket, bearer_client):
    for number in range(3):
        services.share_create(user=alice, bucket_name=s3_bucket.name, key=f"a{number}", expires_in=60)
    services.share_create(user=bob, bucket_name=s3_bucket.name, key="team-a/b", expires_in=60)
    first = bearer_client.get("/api/shares?page_size=2").json()
    assert [row["key"] for row in first["results"]] == ["a2", "a1"]
    assert (first["count"], first["pages"], first["next"]) == (3, 2, 2)
    second = bearer_client.get("/api/shares?page_size=2&page=2").json()
    assert [row["key"] for row in second["results"]] == ["a0"] and second["next"] is None
    assert "/s/" in second["results"][0]["url"]
    assert bearer_client.get("/api/shares?page=0").status_code == 400
    assert bearer_client.get("/api/shares?page=abc").json()["field"] == "page"


def test_it_revokes_through_the_api(alice, grants, s3_bucket, put_object, bearer_client, client):
    put_object("x")
    result = services.share_create(user=alice, bucket_name=s3_bucket.name, key="x", expires_in=600)
    response = bearer_client.post(f"/api/shares/{result.share.pk}/revoke")
    assert response.status_code == 200
    assert response.json()["status"] == "revoked" and response.json()["revoked"] is True
    assert client.get(urllib.parse.urlsplit(result.url).path).status_code == 410


def test_another_users_share_id_is_404(bob, grants, s3_bucket, bearer_client):
    result = services.share_create(user=bob, bucket_name=s3_bucket.name, key="team-a/x", expires_in=60)
    assert bearer_client.post(f"/api/shares/{result.share.pk}/revoke").status_code == 404
    assert bearer_client.post("/api/shares/99999/revoke").status_code == 404
    assert Share.objects.get().revoked_at is None


def test_a_direct_link_cannot_be_revoked(alice, grants, s3_bucket, bearer_client):
    result = services.share_create(user=alice, bucket_name=s3_bucket.name, key="x", expires_in=60, kind="direct")
    response = bearer_client.post(f"/api/shares/{result.share.pk}/revoke")
    assert response.status_code == 409 and "cannot be revoked" in response.json()["error"]


def test_me_answers_the_username(bearer_client):
    assert bearer_client.get("/api/me").json() == {"username": "alice"}


def test_no_link_or_token_reaches_the_logs_or_audit(bearer_client, alice_token, grants, s3_bucket, caplog, client):
    caplog.set_level(logging.DEBUG)
    direct = post_json(bearer_client, "/api/shares", {"bucket": s3_bucket.name, "key": "x", "expires_in": 60,
                                                      "kind": "direct"}).json()["url"]
    portal = post_json(bearer_client, "/api/shares", {"bucket": s3_bucket.name, "key": "x",
                                                      "expires_in": 60}).json()["url"]
    redirect = client.get(urllib.parse.urlsplit(portal).path)["Location"]
    signature = urllib.parse.parse_qs(urllib.parse.urlsplit(direct).query)["X-Amz-Signature"][0]
    secrets_ = [direct, signature, portal, portal.rsplit("/", 1)[-1], redirect, alice_token]
    dumped = repr(list(AuditEvent.objects.values()))
    for secret in secrets_:
        assert secret not in dumped and secret not in caplog.text


# --- tokens --------------------------------------------------------------------------------------

def test_a_token_is_stored_hashed_and_audited(alice):
    token, plaintext = tokens.create_api_token(alice, "ci")
    assert plaintext not in (token.digest, token.prefix) and len(plaintext) >= 40
    assert tokens.authenticate_bearer(f"Bearer {plaintext}") == alice
    event = AuditEvent.objects.get(action=audit.TOKEN_CREATED)
    assert plaintext not in repr(event.details)
    tokens.delete_api_token(alice, token.pk)
    assert tokens.authenticate_bearer(f"Bearer {plaintext}") is None
    assert AuditEvent.objects.filter(action=audit.TOKEN_DELETED).count() == 1


def test_last_used_is_written_at_most_once_a_minute(alice):
    token, plaintext = tokens.create_api_token(alice, "ci")
    start = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.timezone.utc)
    with time_machine.travel(start, tick=False):
        tokens.authenticate_bearer(f"Bearer {plaintext}")
    with time_machine.travel(start + dt.timedelta(seconds=30), tick=False):
        tokens.authenticate_bearer(f"Bearer {plaintext}")
    token.refresh_from_db()
    assert token.last_used_at == start
    with time_machine.travel(start + dt.timedelta(seconds=61), tick=False):
        tokens.authenticate_bearer(f"Bearer {plaintext}")
    token.refresh_from_db()
    assert token.last_used_at == start + dt.timedelta(seconds=61)


def test_a_stranger_cannot_delete_my_token(alice, bob):
    from django.http import Http404

    token, _ = tokens.create_api_token(alice, "ci")
    with pytest.raises(Http404):
        tokens.delete_api_token(bob, token.pk)
    assert ApiToken.objects.count() == 1


def test_create_api_token_prints_a_working_token(alice):
    out = io.StringIO()
    call_command("create_api_token", "alice", "--name", "deploy", stdout=out)
    plaintext = out.getvalue().strip()
    assert tokens.authenticate_bearer(f"Bearer {plaintext}") == alice
    assert ApiToken.objects.get().name == "deploy"


# --- the presign command ---------------------------------------------------------------------------

def presign(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("presign", *args, stdout=out, stderr=err)
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("key", ODD_KEYS)
def test_presign_prints_only_a_working_url(s3_bucket, put_object, key):
    body = put_object(key)
    code, out, err = presign(f"s3://{s3_bucket.name}/{key}", "--expires-in", "600")
    assert (code, err) == (0, "")
    assert out.count("\n") == 1 and fetch(out.strip())[1] == body
    share = Share.objects.get()
    assert share.key == key and share.created_by_name == "cli" and share.kind == "direct"
    assert AuditEvent.objects.get(action=audit.SHARE_CREATED).actor_name == "cli"


def test_presign_works_for_an_unregistered_bucket(local_s3, s3_client, db):
    s3_client.create_bucket(Bucket="not-registered")
    s3_client.put_object(Bucket="not-registered", Key="a b.txt", Body=b"hello")
    code, out, _ = presign("s3://not-registered/a b.txt", "--endpoint-url", local_s3.endpoint_url)
    assert code == 0 and fetch(out.strip())[1] == b"hello"
    assert not Bucket.objects.filter(name="not-registered").exists()
    assert Share.objects.get().bucket is None


def test_presign_records_the_named_user(alice, s3_bucket):
    code, _, _ = presign(f"s3://{s3_bucket.name}/x", "--as", "alice")
    assert code == 0
    assert Share.objects.get().created_by == alice
    assert AuditEvent.objects.get(action=audit.SHARE_CREATED).actor == alice


def test_presign_signs_the_seed_bucket_like_the_aws_cli(db, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAZTGKYWNBM2VCDHDT")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    s3.clear_clients()
    code, out, _ = presign("s3://newtestout/test/image.png", "--region", "cn-northwest-1", "--expires-in", "604800")
    s3.clear_clients()
    assert code == 0
    assert out.startswith("https://newtestout.s3.cn-northwest-1.amazonaws.com.cn/test/image.png?"
                          "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAZTGKYWNBM2VCDHDT%2F")
    assert "%2Fcn-northwest-1%2Fs3%2Faws4_request" in out and "X-Amz-Expires=604800" in out


@pytest.mark.parametrize("value", ["0", "-1", "604801", "abc", "1e3", "3600.5", "true", "9" * 5000])
def test_presign_rejects_bad_expiry_in_one_line(s3_bucket, value):
    code, out, err = presign(f"s3://{s3_bucket.name}/x", "--expires-in", value)
    assert code == 1 and out == ""
    assert err == "presign: --expires-in must be a whole number of seconds from 1 to 604800\n"
    assert not Share.objects.exists()


@pytest.mark.parametrize("uri", ["bucket/key", "s3://", "s3://bucket-only", "s3://bucket-only/", "s3://Bad_Name/k",
                                 "https://example.com/x"])
def test_presign_rejects_bad_uris(db, uri):
    code, out, err = presign(uri)
    assert code == 1 and out == "" and err.startswith("presign: ") and err.count("\n") == 1


def test_presign_rejects_an_unknown_user(s3_bucket):
    code, _, err = presign(f"s3://{s3_bucket.name}/x", "--as", "nobody")
    assert code == 1 and "nobody" in err


@pytest.mark.parametrize("field,raw_value", [
    ("bucket", '"Bad_Bucket"'),
    ("bucket", '"a\\u0000b"'),
    ("bucket", "5"),
    ("key", '"lone \\ud800 surrogate"'),
    ("key", '"nul \\u0000 byte"'),
    ("key", "[1]"),
    ("note", '"nul \\u0000 byte"'),
    ("note", '"lone \\udfff"'),
    ("kind", '["portal"]'),
    ("max_downloads", "true"),
])
def test_it_rejects_odd_values_with_400_never_500(bearer_client, grants, s3_bucket, field, raw_value):
    values = {"bucket": f'"{s3_bucket.name}"', "key": '"x"', "expires_in": "60", field: raw_value}
    raw = "{" + ", ".join(f'"{name}": {value}' for name, value in values.items()) + "}"
    response = post_json(bearer_client, "/api/shares", raw)
    assert response.status_code == 400 and response.json()["field"] == field
    assert not Share.objects.exists()
