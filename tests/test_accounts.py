"""Accounts: sign in with username or email, sign out, password reset end to
end, sign-up closed by default and open only to allowed domains, and every page
but the public ones needs a signed-in user."""
from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.test import override_settings
from django.urls import URLPattern, URLResolver, get_resolver

from tests.conftest import PASSWORD


def _sign_in(client, login: str, password: str = PASSWORD):
    return client.post("/accounts/login/", {"login": login, "password": password})


def test_it_signs_in_with_the_username(client, alice):
    response = _sign_in(client, "alice")
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200


def test_it_signs_in_with_the_email_address(client, alice):
    response = _sign_in(client, "alice@example.com")
    assert response.status_code == 302 and response["Location"] == "/"


def test_it_rejects_a_wrong_password_with_the_form_error(client, alice):
    response = _sign_in(client, "alice", "not-the-password")
    assert response.status_code == 200
    assert b"The username and/or password you specified are not correct." in response.content
    assert client.get("/").status_code == 302  # still signed out


def test_it_signs_out_on_post(alice_client):
    response = alice_client.post("/accounts/logout/")
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"
    assert alice_client.get("/").status_code == 302


def test_it_resets_a_forgotten_password_end_to_end(client, alice):
    response = client.post("/accounts/password/reset/", {"email": "alice@example.com"})
    assert response.status_code == 302
    assert len(mail.outbox) == 1
    link = re.search(r"http://testserver(/accounts/password/reset/key/\S+/)", mail.outbox[0].body).group(1)
    # allauth moves the key out of the URL into the session, then shows the form.
    form_page = client.get(link, follow=True)
    assert form_page.status_code == 200
    response = client.post(form_page.redirect_chain[-1][0] if form_page.redirect_chain else link,
                           {"password1": "a-brand-new-passphrase-9", "password2": "a-brand-new-passphrase-9"})
    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.check_password("a-brand-new-passphrase-9")
    assert _sign_in(client, "alice", "a-brand-new-passphrase-9").status_code == 302


def test_the_reset_mail_does_not_reveal_unknown_addresses(client, db):
    response = client.post("/accounts/password/reset/", {"email": "nobody@example.com"})
    assert response.status_code == 302 and response["Location"] == "/accounts/password/reset/done/"


def test_sign_up_is_closed_by_default(client, db):
    response = client.post("/accounts/signup/", {"email": "new@example.com", "username": "newbie",
                                                 "password1": "a-long-passphrase-55", "password2": "a-long-passphrase-55"})
    assert not User.objects.filter(username="newbie").exists()
    assert response.status_code == 200


@override_settings(SIGNUP_ENABLED=True, SIGNUP_EMAIL_DOMAINS=["example.org"])
def test_sign_up_opens_for_an_allowed_domain(client, db):
    response = client.post("/accounts/signup/", {"email": "new@Example.org", "username": "newbie",
                                                 "password1": "a-long-passphrase-55", "password2": "a-long-passphrase-55"})
    assert response.status_code == 302
    user = User.objects.get(username="newbie")
    assert not user.is_staff and not user.is_superuser


@override_settings(SIGNUP_ENABLED=True, SIGNUP_EMAIL_DOMAINS=["example.org"])
def test_sign_up_rejects_other_domains(client, db):
    response = client.post("/accounts/signup/", {"email": "new@example.org.evil.com", "username": "newbie",
                                                 "password1": "a-long-passphrase-55", "password2": "a-long-passphrase-55"})
    assert response.status_code == 200
    assert b"Sign-up is open to addresses at example.org only." in response.content
    assert not User.objects.filter(username="newbie").exists()


@pytest.mark.parametrize("url", ["/accounts/login/", "/accounts/password/reset/", "/accounts/password/reset/done/",
                                 "/accounts/password/reset/key/1-set-password/", "/accounts/password/reset/key/done/",
                                 "/healthz"])
def test_public_pages_need_no_sign_in(client, db, url):
    assert client.get(url).status_code == 200


def _plain_urls(resolver=None, prefix: str = ""):
    """Every URL pattern without parameters, e.g. /audit/ or /accounts/email/."""
    for entry in (resolver or get_resolver()).url_patterns:
        route = str(entry.pattern)
        if "<" in route or "(?P" in route or route.startswith("^"):
            continue
        if isinstance(entry, URLResolver):
            yield from _plain_urls(entry, prefix + route)
        elif isinstance(entry, URLPattern):
            yield "/" + prefix + route


PUBLIC = {"/accounts/login/", "/healthz", "/accounts/signup/", "/accounts/password/reset/",
          "/accounts/password/reset/done/", "/accounts/password/reset/key/done/", "/accounts/logout/",
          "/accounts/login/code/confirm/", "/accounts/confirm-email/", "/accounts/inactive/",
          "/accounts/email/verify/", "/accounts/login/code/", "/accounts/3rdparty/login/cancelled/",
          "/accounts/3rdparty/login/error/", "/accounts/3rdparty/signup/"}


def test_every_other_page_needs_a_signed_in_user(client, db):
    urls = sorted(set(_plain_urls()) - PUBLIC)
    assert "/" in urls and "/admin/" in urls
    for url in urls:
        response = client.get(url)
        if url.startswith("/api/"):  # token-authenticated JSON: 401, not a sign-in page
            assert response.status_code in (401, 403, 405), url
            continue
        assert response.status_code in (302, 404, 405), url
        if response.status_code == 302:
            location = response["Location"]
            assert location.startswith(("/accounts/login/", "/admin/login/")), (url, location)


def test_the_admin_signs_in_through_the_portal_form(client, admin_user):
    response = client.get("/admin/")
    assert response.status_code == 302
    response = client.get(response["Location"])
    assert response.status_code == 302 and response["Location"] == "/accounts/login/?next=/admin/"
    client.post(response["Location"], {"login": "admin", "password": PASSWORD})
    assert client.get("/admin/").status_code == 200


def test_the_admin_login_refuses_a_signed_in_non_admin_without_a_loop(alice_client):
    assert alice_client.get("/admin/login/?next=/admin/").status_code == 403


def test_the_admin_login_ignores_an_offsite_next(client, db):
    response = client.get("/admin/login/?next=https://evil.example/")
    assert response["Location"] == "/accounts/login/?next=/admin/"


@pytest.mark.browser
def test_a_wrong_password_in_the_browser_shows_the_form_error(page, live_server, sign_in, alice):
    sign_in(page, "alice", "not-the-password")
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert "not correct" in alert.inner_text()
    assert page.url.startswith(f"{live_server.url}/accounts/login/")
    assert page.get_by_label("Username or email").input_value() == "alice"


@pytest.mark.browser
def test_it_signs_in_and_out_in_the_browser(page, live_server, sign_in, alice):
    sign_in(page, "alice")
    page.wait_for_url(f"{live_server.url}/")
    page.get_by_label("User menu").click()
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{live_server.url}/accounts/login/")
    page.goto(f"{live_server.url}/")
    assert page.url.startswith(f"{live_server.url}/accounts/login/")
