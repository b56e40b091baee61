"""The share dialog, its result page, the QR code and "My shares" (Django test
client against nanio, which verifies signatures: a link that "works" here
really downloads)."""
from __future__ import annotations

import datetime as dt
import re
from urllib.parse import urlencode

import pytest
import time_machine
from django.utils import timezone

from tests.sharecore_fixtures import fetch
from shares.models import AuditEvent, Share

BODY = b"quarterly numbers\n"


@pytest.fixture
def report(s3_client, s3_bucket, grants) -> str:
    """An object alice may share; returns its key."""
    key = "reports/q3 numbers.txt"
    s3_client.put_object(Bucket=s3_bucket.name, Key=key, Body=BODY)
    return key


def share_url(bucket: str, key: str) -> str:
    return "/share/new?" + urlencode({"bucket": bucket, "key": key})


def post_share(client, bucket: str, key: str, **fields):
    data = {"expiry": "3600", "custom_value": "", "custom_unit": "seconds", "kind": "portal",
            "max_downloads": "", "note": ""}
    data.update(fields)
    return client.post(share_url(bucket, key), data)


def link_in(response) -> str:
    match = re.search(rb'id="share-url" class="mono share-url" value="([^"]+)"', response.content)
    assert match, "no link on the page"
    return match.group(1).decode().replace("&amp;", "&")


# --- the form ------------------------------------------------------------------------

def test_it_shows_the_form_with_the_grant_maximum(bob_client, s3_bucket, grants, s3_client):
    response = bob_client.get(share_url(s3_bucket.name, "team-a/plan.txt"))
    assert response.status_code == 200
    assert b"Your grant allows links up to 1 day (86400 seconds)" in response.content
    assert b"1 hour" in response.content and b"7 days" in response.content


def test_it_shares_a_portal_link_and_shows_the_result(alice_client, s3_bucket, report):
    response = post_share(alice_client, s3_bucket.name, report, expiry="86400", note="for Dana")
    share = Share.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/shares/{share.pk}/"
    assert share.kind == "portal" and share.expires_in == 86400 and share.note == "for Dana"
    assert AuditEvent.objects.filter(action="share.created", share=share).count() == 1

    page = alice_client.get(response["Location"])
    assert page.status_code == 200
    assert page["Cache-Control"] == "no-store"
    url = link_in(page)
    assert url.startswith("http://testserver/s/")
    assert b"Copy link" in page.content
    assert b"in 1\xc2\xa0day" in page.content or b"in 23\xc2\xa0hours" in page.content
    assert f'src="/shares/{share.pk}/qr.svg"'.encode() in page.content
    assert b"for Dana" in page.content


def test_it_shows_a_portal_link_again_later(alice_client, s3_bucket, report):
    post_share(alice_client, s3_bucket.name, report)
    share = Share.objects.get()
    first = link_in(alice_client.get(f"/shares/{share.pk}/"))
    again = link_in(alice_client.get(f"/shares/{share.pk}/"))
    assert first == again


def test_it_converts_a_custom_expiry_with_its_unit(alice_client, s3_bucket, report):
    post_share(alice_client, s3_bucket.name, report, expiry="custom", custom_value="3", custom_unit="days")
    assert Share.objects.get().expires_in == 3 * 86400


def test_it_takes_plain_seconds(alice_client, s3_bucket, report):
    post_share(alice_client, s3_bucket.name, report, expiry="custom", custom_value="90")
    assert Share.objects.get().expires_in == 90


def test_it_shows_a_direct_link_once_and_the_link_downloads(alice_client, s3_bucket, report):
    response = post_share(alice_client, s3_bucket.name, report, kind="direct", expiry="604800")
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    url = link_in(response)
    assert "X-Amz-Signature=" in url
    assert b"cannot be shown again" in response.content
    assert b'src="data:image/svg+xml' in response.content  # the QR is inline: nothing to fetch later
    assert fetch(url, follow=True)[:2] == (200, BODY)

    share = Share.objects.get()
    later = alice_client.get(f"/shares/{share.pk}/")
    assert later.status_code == 200
    assert b"X-Amz-Signature" not in later.content
    assert b"cannot be shown again" in later.content
    assert alice_client.get(f"/shares/{share.pk}/qr.svg").status_code == 404
    # The signed URL is in no record the portal keeps.
    assert "X-Amz" not in str(list(AuditEvent.objects.values_list("details", flat=True)))


@pytest.mark.parametrize(
    ("fields", "field_name", "message"),
    [
        ({"expiry": "custom", "custom_value": "0"}, "custom_value", b"at least 1 second"),
        ({"expiry": "custom", "custom_value": "-1"}, "custom_value", b"must be a whole number"),
        ({"expiry": "custom", "custom_value": "abc"}, "custom_value", b"must be a whole number"),
        ({"expiry": "custom", "custom_value": "1e3"}, "custom_value", b"must be a whole number"),
        ({"expiry": "custom", "custom_value": "3600.5"}, "custom_value", b"must be a whole number"),
        ({"expiry": "custom", "custom_value": "true"}, "custom_value", b"must be a whole number"),
        ({"expiry": "custom", "custom_value": "9" * 5000}, "custom_value", b"far too large"),
        ({"expiry": "custom", "custom_value": "99999999999"}, "custom_value", b"too long"),
        ({"expiry": "custom", "custom_value": ""}, "custom_value", b"Enter a custom expiry"),
        ({"expiry": "custom", "custom_value": "604801", "kind": "direct"}, "custom_value",
         b"a direct link lives at most 7 days (604800 seconds)"),
        ({"expiry": "custom", "custom_value": "8", "custom_unit": "days", "kind": "direct"}, "custom_value",
         b"at most 7 days"),
        ({"expiry": "custom", "custom_value": "31", "custom_unit": "days"}, "custom_value", b"too long"),
        ({"expiry": "12345"}, "expiry", b"Select a valid choice"),
        ({"expiry": ""}, "expiry", b"This field is required"),
        ({"kind": "ftp"}, "kind", b"Select a valid choice"),
        ({"max_downloads": "0"}, "max_downloads", b"at least 1"),
        ({"max_downloads": "two"}, "max_downloads", b"must be a whole number"),
        ({"max_downloads": "2", "kind": "direct"}, "max_downloads", b"cannot count downloads"),
        ({"note": "x" * 501}, "note", b"at most 500 characters"),
    ],
)
def test_it_rejects_bad_input_with_a_field_error(alice_client, s3_bucket, report, fields, field_name, message):
    response = post_share(alice_client, s3_bucket.name, report, **fields)
    assert response.status_code == 400
    assert message in response.content
    assert 'class="errorlist' in response.content.decode()
    form = response.context["form"]
    assert form.errors.get(field_name), form.errors
    assert Share.objects.count() == 0
    assert not AuditEvent.objects.filter(action="share.created").exists()


def test_it_keeps_what_was_typed_when_it_rerenders(alice_client, s3_bucket, report):
    response = post_share(alice_client, s3_bucket.name, report, expiry="custom", custom_value="abc", note="keep me")
    assert b'value="abc"' in response.content
    assert b'value="keep me"' in response.content


def test_it_rejects_expiry_over_the_grant_maximum(bob_client, s3_bucket, grants, s3_client):
    s3_client.put_object(Bucket=s3_bucket.name, Key="team-a/plan.txt", Body=b"plan")
    response = post_share(bob_client, s3_bucket.name, "team-a/plan.txt", expiry="604800")
    assert response.status_code == 400
    assert b"your grant allows links of at most 1 day (86400 seconds)" in response.content
    assert Share.objects.count() == 0


def test_it_refuses_a_file_outside_the_grant(bob_client, s3_bucket, grants):
    response = bob_client.get(share_url(s3_bucket.name, "team-b/secret.txt"))
    assert response.status_code == 403
    assert b"You cannot share this file" in response.content
    response = post_share(bob_client, s3_bucket.name, "team-b/secret.txt")
    assert response.status_code == 403
    assert Share.objects.count() == 0


def test_it_refuses_a_grant_without_sharing(bob_client, s3_bucket, grants):
    grants["bob"].can_share = False
    grants["bob"].save()
    response = bob_client.get(share_url(s3_bucket.name, "team-a/plan.txt"))
    assert response.status_code == 403


def test_it_answers_404_for_an_unknown_or_hidden_bucket(alice_client, charlie_client, s3_bucket, grants):
    assert alice_client.get(share_url("no-such-bucket", "a.txt")).status_code == 404
    assert charlie_client.get(share_url(s3_bucket.name, "a.txt")).status_code == 404
    assert post_share(charlie_client, s3_bucket.name, "a.txt").status_code == 404


def test_it_asks_for_a_file_when_the_key_is_missing(alice_client, s3_bucket, grants):
    assert alice_client.get(f"/share/new?bucket={s3_bucket.name}").status_code == 400
    assert alice_client.get(share_url(s3_bucket.name, "folder/")).status_code == 400
    assert alice_client.get(share_url(s3_bucket.name, "x" * 1025)).status_code == 400


def test_it_shows_an_s3_failure_as_a_plain_message(alice_client, s3_bucket, report, monkeypatch):
    from shares import s3 as s3_module

    def broken(*args, **kwargs):
        raise s3_module.S3Error("The S3 endpoint cannot be reached. Check the endpoint URL.", status=502)

    monkeypatch.setattr(s3_module, "presign_get", broken)
    response = post_share(alice_client, s3_bucket.name, report, kind="direct")
    assert response.status_code == 502
    assert b"The S3 endpoint cannot be reached" in response.content
    assert Share.objects.count() == 0


def test_it_requires_csrf_on_the_share_form(csrf_client, s3_bucket, report):
    response = csrf_client.post(share_url(s3_bucket.name, report), {"expiry": "3600", "kind": "portal"})
    assert response.status_code == 403
    assert Share.objects.count() == 0


# --- result page, QR code ---------------------------------------------------------------

def test_it_serves_the_qr_code_to_the_owner_only(alice_client, bob_client, s3_bucket, report):
    post_share(alice_client, s3_bucket.name, report)
    share = Share.objects.get()
    response = alice_client.get(f"/shares/{share.pk}/qr.svg")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/svg+xml"
    assert "no-store" in response["Cache-Control"]
    assert response.content.lstrip().startswith(b"<?xml") and b"<svg" in response.content
    assert bob_client.get(f"/shares/{share.pk}/qr.svg").status_code == 404


def test_it_hides_another_users_share(alice_client, bob_client, s3_bucket, report):
    post_share(alice_client, s3_bucket.name, report)
    share = Share.objects.get()
    assert bob_client.get(f"/shares/{share.pk}/").status_code == 404
    assert bob_client.post(f"/shares/{share.pk}/revoke", {"confirm": "yes"}).status_code == 404
    assert bob_client.get("/shares/999999/").status_code == 404
    share.refresh_from_db()
    assert share.revoked_at is None


def test_it_shows_the_expiry_in_the_users_time_zone(alice_client, s3_bucket, report):
    with time_machine.travel(dt.datetime(2026, 1, 10, 12, 0, tzinfo=dt.timezone.utc), tick=False):
        post_share(alice_client, s3_bucket.name, report, expiry="3600")
        share = Share.objects.get()
        alice_client.cookies["tz"] = "Asia/Shanghai"
        page = alice_client.get(f"/shares/{share.pk}/")
    # 13:00 UTC is 21:00 in Shanghai.
    assert b"10 Jan 2026, 21:00 CST" in page.content
    assert b"in 1\xc2\xa0hour" in page.content


def test_it_shows_the_credential_warning_on_the_result_page(alice_client, s3_bucket, report, monkeypatch):
    from shares import s3 as s3_module

    soon = timezone.now() + dt.timedelta(hours=1)
    monkeypatch.setattr(s3_module, "credential_expiry", lambda config: (True, soon))
    response = post_share(alice_client, s3_bucket.name, report, kind="direct", expiry="86400")
    assert response.status_code == 200
    assert b"sooner than the" in response.content
    assert b"portal link" in response.content


# --- My shares, revoke ---------------------------------------------------------------------

def test_it_lists_my_shares_newest_first_with_status(alice_client, bob_client, s3_bucket, report):
    post_share(alice_client, s3_bucket.name, report, note="first")
    post_share(alice_client, s3_bucket.name, report, note="second", max_downloads="2")
    post_share(alice_client, s3_bucket.name, report, kind="direct", note="third")
    response = alice_client.get("/shares/")
    assert response.status_code == 200
    text = response.content.decode()
    assert text.index("third") < text.index("second") < text.index("first")
    assert "0 / 2" in text
    assert text.count(">Copy link</button>") == 2  # portal links only: a direct link cannot be shown again
    assert text.count(">Revoke</button>") == 2
    assert "first" not in bob_client.get("/shares/").content.decode()


def test_it_filters_my_shares_by_status(alice_client, s3_bucket, report):
    post_share(alice_client, s3_bucket.name, report, note="kept")
    post_share(alice_client, s3_bucket.name, report, note="gone")
    gone = Share.objects.get(note="gone")
    alice_client.post(f"/shares/{gone.pk}/revoke", {"confirm": "yes"})
    revoked = alice_client.get("/shares/?status=revoked").content.decode()
    active = alice_client.get("/shares/?status=active").content.decode()
    assert "gone" in revoked and "kept" not in revoked
    assert "kept" in active and "gone" not in active
    assert "No expired shares" in alice_client.get("/shares/?status=expired").content.decode()
    assert alice_client.get("/shares/?status=bogus").status_code == 200


def test_it_pages_my_shares(alice, alice_client, s3_bucket, grants):
    now = timezone.now()
    Share.objects.bulk_create([
        Share(bucket=s3_bucket, bucket_name=s3_bucket.name, key=f"k{i}", kind="direct", created_by=alice,
              created_by_name="alice", created_at=now - dt.timedelta(minutes=i), expires_in=60,
              requested_expires_at=now, expires_at=now)
        for i in range(30)
    ])
    first = alice_client.get("/shares/").content.decode()
    second = alice_client.get("/shares/?page=2").content.decode()
    assert "Page 1 of 2" in first and f"{s3_bucket.name}/k0<" in first
    assert f"{s3_bucket.name}/k29<" in second and f"{s3_bucket.name}/k0<" not in second


def test_it_asks_for_confirmation_before_revoking(alice_client, s3_bucket, report):
    post_share(alice_client, s3_bucket.name, report)
    share = Share.objects.get()
    response = alice_client.post(f"/shares/{share.pk}/revoke")
    assert response.status_code == 200
    assert b"Revoke this link?" in response.content
    share.refresh_from_db()
    assert share.revoked_at is None

    response = alice_client.post(f"/shares/{share.pk}/revoke", {"confirm": "yes"}, follow=True)
    assert response.redirect_chain[-1][0] == "/shares/"
    assert "It stops working at once" in response.content.decode()
    share.refresh_from_db()
    assert share.revoked_at is not None
    assert AuditEvent.objects.filter(action="share.revoked", share=share).count() == 1
    # Revoking twice writes nothing more.
    alice_client.post(f"/shares/{share.pk}/revoke", {"confirm": "yes"})
    assert AuditEvent.objects.filter(action="share.revoked", share=share).count() == 1


def test_it_rejects_get_on_revoke(alice_client, s3_bucket, report):
    post_share(alice_client, s3_bucket.name, report)
    share = Share.objects.get()
    assert alice_client.get(f"/shares/{share.pk}/revoke").status_code == 405


def test_it_rejects_revoke_without_csrf(csrf_client, alice_client, s3_bucket, report):
    post_share(alice_client, s3_bucket.name, report)
    share = Share.objects.get()
    response = csrf_client.post(f"/shares/{share.pk}/revoke", {"confirm": "yes"})
    assert response.status_code == 403
    share.refresh_from_db()
    assert share.revoked_at is None


def test_it_needs_sign_in(client, db):
    for url in ("/shares/", "/shares/1/", "/share/new?bucket=b&key=k", "/shares/1/qr.svg"):
        response = client.get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"], url


def test_it_says_the_link_is_ready_only_right_after_creating_it(alice_client, s3_bucket, report):
    response = post_share(alice_client, s3_bucket.name, report)
    assert b"Your link is ready" in alice_client.get(response["Location"]).content
    assert b"Your link is ready" not in alice_client.get(response["Location"]).content


def test_it_does_not_offer_a_revoked_link_for_copying(alice_client, s3_bucket, report):
    post_share(alice_client, s3_bucket.name, report)
    share = Share.objects.get()
    alice_client.post(f"/shares/{share.pk}/revoke", {"confirm": "yes"})
    page = alice_client.get(f"/shares/{share.pk}/")
    assert b"This link is revoked: it no longer works" in page.content
    assert b"Copy link" not in page.content and b"/s/" not in page.content


def test_it_shows_an_expired_link_as_expired(alice_client, s3_bucket, report):
    post_share(alice_client, s3_bucket.name, report, expiry="3600")
    share = Share.objects.get()
    with time_machine.travel(timezone.now() + dt.timedelta(hours=2)):
        page = alice_client.get(f"/shares/{share.pk}/")
        listing = alice_client.get("/shares/?status=expired")
    assert b"This link is expired" in page.content
    assert b"ago)" in page.content
    assert share.key.encode() in listing.content


def test_it_shows_a_used_up_link_as_used_up(alice_client, s3_bucket, report):
    post_share(alice_client, s3_bucket.name, report, max_downloads="1")
    share = Share.objects.get()
    Share.objects.filter(pk=share.pk).update(download_count=1)
    listing = alice_client.get("/shares/?status=used_up").content.decode()
    assert "Used up" in listing and "1 / 1" in listing
    assert ">Revoke</button>" not in listing


def test_it_rerenders_an_empty_post_with_errors(alice_client, s3_bucket, report):
    response = alice_client.post(share_url(s3_bucket.name, report), {})
    assert response.status_code == 400
    assert response.context["form"].errors.get("expiry")
    assert Share.objects.count() == 0


def test_it_explains_that_a_direct_link_cannot_be_revoked(alice_client, s3_bucket, report):
    post_share(alice_client, s3_bucket.name, report, kind="direct")
    share = Share.objects.get()
    response = alice_client.post(f"/shares/{share.pk}/revoke", {"confirm": "yes"}, follow=True)
    assert "A direct link cannot be revoked" in response.content.decode()
    share.refresh_from_db()
    assert share.revoked_at is None
    assert not AuditEvent.objects.filter(action="share.revoked").exists()


def _many_shares(owner, bucket, count: int) -> None:
    import secrets

    now = timezone.now()
    Share.objects.bulk_create([
        Share(bucket=bucket, bucket_name=bucket.name, key=f"k{i}", kind="portal", created_by=owner,
              created_by_name=owner.username, created_at=now - dt.timedelta(minutes=i), expires_in=3600,
              requested_expires_at=now + dt.timedelta(hours=1), expires_at=now + dt.timedelta(hours=1),
              token_nonce=secrets.token_urlsafe(32), token_digest=secrets.token_hex(32))
        for i in range(count)
    ])


def test_my_shares_costs_the_same_queries_for_a_full_page(alice, alice_client, s3_bucket, grants,
                                                          django_assert_max_num_queries):
    _many_shares(alice, s3_bucket, 3)
    alice_client.get("/shares/")  # warm the session and the template cache
    with django_assert_max_num_queries(8) as few:
        alice_client.get("/shares/")
    _many_shares(alice, s3_bucket, 40)
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = alice_client.get("/shares/")
    assert response.content.decode().count(">Copy link</button>") == 25


def test_cancel_goes_back_to_the_files_folder(alice_client, s3_bucket, report):
    response = alice_client.get(share_url(s3_bucket.name, report))
    assert f'href="/browse/{s3_bucket.name}/reports/" class="button secondary">Cancel'.encode() in response.content


# nanio refuses to store keys with "..", "." or empty segments ("a//b"): those are
# covered with the share service's own tests; these go through the form for real.
@pytest.mark.parametrize("key", ["with space.txt", "a+b.txt", "100%.txt", "hash#tag.txt", "what?.txt",
                                 "eq=(p)[b].txt", "ünïcødé/日本語 ファイル.txt"])
def test_it_shares_odd_keys_through_the_form(alice_client, client, s3_client, s3_bucket, grants, key):
    """nanio verifies the signature: the redirect target really serves this very key."""
    body = f"contents of {key}".encode()
    s3_client.put_object(Bucket=s3_bucket.name, Key=key, Body=body)
    response = post_share(alice_client, s3_bucket.name, key)
    assert response.status_code == 302
    share = Share.objects.get()
    assert share.key == key
    link = link_in(alice_client.get(response["Location"]))
    redirect = client.get(link.replace("http://testserver", ""))
    assert redirect.status_code == 302
    assert fetch(redirect["Location"], follow=True)[:2] == (200, body)
