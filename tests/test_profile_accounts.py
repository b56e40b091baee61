"""allauth's account pages wear the portal's layout (header, stylesheet, no inline
script or style), and still work."""
from __future__ import annotations

import pytest
from django.core import mail

from tests.conftest import PASSWORD


def looks_like_the_portal(response) -> None:
    text = response.content.decode()
    assert 'class="topbar"' in text and "/static/portal/portal.css" in text
    assert "<script>" not in text and "style=" not in text and "<style" not in text


@pytest.mark.parametrize("url", ["/accounts/password/change/", "/accounts/logout/"])
def test_signed_in_account_pages_look_like_the_portal(alice_client, url):
    response = alice_client.get(url)
    assert response.status_code == 200
    looks_like_the_portal(response)


@pytest.mark.parametrize("url", ["/accounts/password/reset/", "/accounts/password/reset/done/",
                                 "/accounts/password/reset/key/1-bad/", "/accounts/signup/"])
def test_signed_out_account_pages_look_like_the_portal(client, db, url):
    response = client.get(url, follow=True)
    assert response.status_code == 200
    looks_like_the_portal(response)


def test_it_shows_the_closed_sign_up_in_plain_words(client, db):
    response = client.get("/accounts/signup/", follow=True)
    assert b"Accounts on this portal are created by an administrator" in response.content


def test_it_changes_the_password(alice, alice_client):
    response = alice_client.post("/accounts/password/change/", {
        "oldpassword": PASSWORD, "password1": "a-new-long-passphrase-77", "password2": "a-new-long-passphrase-77",
    })
    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.check_password("a-new-long-passphrase-77")


def test_it_shows_a_wrong_current_password_on_the_field(alice, alice_client):
    response = alice_client.post("/accounts/password/change/", {
        "oldpassword": "wrong", "password1": "a-new-long-passphrase-77", "password2": "a-new-long-passphrase-77",
    })
    assert response.status_code == 200
    assert 'class="errorlist' in response.content.decode()
    looks_like_the_portal(response)
    alice.refresh_from_db()
    assert alice.check_password(PASSWORD)


def test_it_sends_a_reset_link(client, alice):
    response = client.post("/accounts/password/reset/", {"email": "alice@example.com"}, follow=True)
    assert b"Check your e-mail" in response.content
    assert len(mail.outbox) == 1


def test_the_reset_link_page_says_when_a_link_is_bad(client, alice):
    response = client.get("/accounts/password/reset/key/1-bad/", follow=True)
    assert b"This reset link no longer works" in response.content
