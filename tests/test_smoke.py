import pytest


def test_home_lists_granted_bucket(alice_client, grants, s3_bucket):
    response = alice_client.get("/")
    assert response.status_code == 200
    assert s3_bucket.label.encode() in response.content


def test_outsider_sees_empty_state(charlie_client, grants):
    response = charlie_client.get("/")
    assert b"Ask an administrator" in response.content


def test_anonymous_is_sent_to_sign_in(client, db):
    response = client.get("/")
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


@pytest.mark.browser
def test_it_signs_in_through_the_form(page, live_server, sign_in, alice):
    sign_in(page, "alice")
    page.wait_for_url(f"{live_server.url}/")
    assert page.get_by_role("heading", name="Buckets", exact=True).is_visible()
