"""The profile page: time zone and personal API tokens (shown once, stored hashed)."""
from __future__ import annotations

import re

from shares.models import ApiToken, AuditEvent


def create_token(client, name="backup script"):
    return client.post("/profile/tokens", {"name": name})


def test_it_shows_the_time_zone_from_the_browser(alice_client):
    alice_client.cookies["tz"] = "Europe/Berlin"
    response = alice_client.get("/profile/")
    assert response.status_code == 200
    assert b"Europe/Berlin" in response.content
    assert b"your browser's time zone" in response.content


def test_it_falls_back_to_the_server_zone(alice_client):
    response = alice_client.get("/profile/")
    assert b"<strong>UTC</strong>" in response.content


def test_it_creates_a_token_and_shows_it_once(alice, alice_client):
    response = create_token(alice_client)
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    match = re.search(rb'id="new-token" class="mono share-url" value="([^"]+)"', response.content)
    assert match
    plaintext = match.group(1).decode()
    token = ApiToken.objects.get(user=alice)
    assert token.name == "backup script"
    assert plaintext not in token.digest and token.digest != plaintext
    assert b"Copy token" in response.content
    assert AuditEvent.objects.filter(action="token.created").count() == 1
    assert plaintext not in str(list(AuditEvent.objects.values_list("details", flat=True)))

    later = alice_client.get("/profile/")
    assert plaintext.encode() not in later.content
    assert b"backup script" in later.content
    assert token.prefix.encode() in later.content
    assert b"never" in later.content  # last used


def test_the_token_works_on_the_api(alice_client, grants):
    response = create_token(alice_client)
    plaintext = re.search(rb'id="new-token" class="mono share-url" value="([^"]+)"', response.content).group(1)
    from django.test import Client

    api = Client().get("/api/shares", HTTP_AUTHORIZATION=f"Bearer {plaintext.decode()}")
    assert api.status_code == 200


def test_it_rejects_a_blank_token_name(alice_client):
    response = create_token(alice_client, name="   ")
    assert response.status_code == 400
    assert b'class="errorlist' in response.content
    assert ApiToken.objects.count() == 0


def test_it_rejects_a_too_long_token_name(alice_client):
    response = create_token(alice_client, name="x" * 101)
    assert response.status_code == 400
    assert ApiToken.objects.count() == 0


def test_it_deletes_a_token(alice, alice_client):
    create_token(alice_client)
    token = ApiToken.objects.get()
    response = alice_client.post(f"/profile/tokens/{token.pk}/delete", follow=True)
    assert response.redirect_chain[-1][0] == "/profile/"
    assert b"Deleted the API token" in response.content
    assert ApiToken.objects.count() == 0
    assert AuditEvent.objects.filter(action="token.deleted").count() == 1


def test_it_hides_another_users_token(alice_client, bob_client):
    create_token(alice_client)
    token = ApiToken.objects.get()
    assert bob_client.post(f"/profile/tokens/{token.pk}/delete").status_code == 404
    assert ApiToken.objects.count() == 1


def test_it_rejects_get_on_token_endpoints(alice_client):
    create_token(alice_client)
    token = ApiToken.objects.get()
    assert alice_client.get("/profile/tokens").status_code == 405
    assert alice_client.get(f"/profile/tokens/{token.pk}/delete").status_code == 405


def test_it_requires_csrf_on_token_endpoints(csrf_client, alice_client):
    assert csrf_client.post("/profile/tokens", {"name": "x"}).status_code == 403
    create_token(alice_client)
    token = ApiToken.objects.get()
    assert csrf_client.post(f"/profile/tokens/{token.pk}/delete").status_code == 403
    assert ApiToken.objects.count() == 1


def test_the_nav_links_to_profile_and_my_shares(alice_client):
    response = alice_client.get("/")
    assert b'href="/profile/"' in response.content
    assert b'href="/shares/"' in response.content
