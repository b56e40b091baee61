"""Browsing on nanio (a real S3-compatible server): personas, grants, paging,
odd keys and S3 failures."""
from __future__ import annotations

import html
import re
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import uuid

import pytest
from django.contrib.auth.models import Group, User
from django.urls import resolve

from shares import browse
from shares.local_s3 import free_port
from shares.models import AuditEvent, Bucket, Grant

LAYOUT = [
    "readme.txt",
    "team-a/report.pdf",
    "team-a/sub/deep.txt",
    "team-a-secret/x",
    "team-b/plan.txt",
]


def put(s3_client, bucket: Bucket, keys, body: bytes = b"hello") -> None:
    for key in keys:
        s3_client.put_object(Bucket=bucket.name, Key=key, Body=body)


@pytest.fixture
def layout(s3_client, s3_bucket, grants):
    put(s3_client, s3_bucket, LAYOUT)
    return s3_bucket


def names_on(response) -> list[str]:
    """The names listed on a folder page, in order."""
    body = response.content.decode()
    rows = re.findall(r'<tr class="browse-(?:folder|file)">\s*<td><a class="mono" href="[^"]*">([^<]*)</a>', body)
    return [html.unescape(name) for name in rows]


def links_on(response, rel: str) -> str | None:
    match = re.search(rf'<a href="([^"]*)" rel="{rel}">', response.content.decode())
    return html.unescape(match.group(1)) if match else None


def denials() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action="access.denied").order_by("id"))


# --- personas -----------------------------------------------------------------------

def test_home_links_each_bucket_to_its_browse_page(alice_client, layout):
    response = alice_client.get("/")
    assert f'href="/browse/{layout.name}/"'.encode() in response.content


def test_it_shows_alice_the_whole_bucket_folders_first(alice_client, layout):
    response = alice_client.get(f"/browse/{layout.name}/")
    assert response.status_code == 200
    assert names_on(response) == ["team-a-secret/", "team-a/", "team-b/", "readme.txt"]


def test_it_shows_admin_the_whole_bucket(admin_client, layout):
    response = admin_client.get(f"/browse/{layout.name}/")
    assert names_on(response) == ["team-a-secret/", "team-a/", "team-b/", "readme.txt"]


def test_it_shows_bob_only_the_folder_leading_to_his_grant(bob_client, layout):
    response = bob_client.get(f"/browse/{layout.name}/")
    assert response.status_code == 200
    assert names_on(response) == ["team-a/"]
    assert b"readme.txt" not in response.content
    assert b"team-a-secret" not in response.content


def test_it_shows_bob_everything_inside_his_grant(bob_client, layout):
    response = bob_client.get(f"/browse/{layout.name}/team-a/")
    assert response.status_code == 200
    assert names_on(response) == ["sub/", "report.pdf"]
    share = "/share/new?" + urllib.parse.urlencode({"bucket": layout.name, "key": "team-a/report.pdf"})
    assert html.escape(share).encode() in response.content


def test_it_shows_the_path_to_a_deep_grant_one_folder_at_a_time(client, layout):
    carol = User.objects.create_user("carol", password="x")
    Grant.objects.create(bucket=layout, user=carol, prefix="team-b/2024/q1/")
    client.force_login(carol)
    assert names_on(client.get(f"/browse/{layout.name}/")) == ["team-b/"]
    assert names_on(client.get(f"/browse/{layout.name}/team-b/")) == ["2024/"]
    assert client.get(f"/browse/{layout.name}/team-b/2024/q1/").status_code == 200
    assert client.get(f"/browse/{layout.name}/team-b/2023/").status_code == 403


def test_it_refuses_charlie_every_page_of_the_bucket(charlie_client, layout):
    for url in (f"/browse/{layout.name}/", f"/browse/{layout.name}/team-a/", f"/object/{layout.name}/readme.txt"):
        response = charlie_client.get(url)
        assert response.status_code == 404
        assert b"readme" not in response.content or url.endswith("readme.txt") is False
        assert b"report.pdf" not in response.content
    assert [e.details["what"] for e in denials()] == ["browse", "browse", "object"]
    assert all(e.details["reason"] == "no grant on bucket" for e in denials())


def test_it_keeps_the_empty_state_for_users_without_grants(charlie_client, layout):
    assert b"Ask an administrator" in charlie_client.get("/").content


# --- prefix escapes -----------------------------------------------------------------

@pytest.mark.parametrize("folder", ["team-a-secret/", "team-b/", "team/", "../team-b/"])
def test_it_denies_bob_folders_outside_his_grant(bob_client, layout, folder):
    response = bob_client.get(browse.folder_url(layout.name, folder))
    assert response.status_code == 403
    assert b"You have not been granted access" in response.content
    assert b"plan.txt" not in response.content and b"/x" not in response.content
    [event] = denials()
    assert event.actor.username == "bob"
    assert event.key == folder
    assert event.details == {"what": "browse", "reason": "prefix outside grant"}


def test_it_treats_a_dot_segment_folder_as_a_literal_prefix(bob_client, layout):
    # "team-a/../team-b/" is a folder *inside* team-a/ to S3 (keys are never
    # normalised): it is empty, and team-b's files do not show.
    response = bob_client.get(browse.folder_url(layout.name, "team-a/../team-b/"))
    assert response.status_code == 200
    assert names_on(response) == []


@pytest.mark.parametrize("key", ["team-a-secret/x", "readme.txt", "../team-a-secret/x", "team-a", "/team-a/report.pdf"])
def test_it_denies_bob_objects_outside_his_grant(bob_client, layout, key):
    response = bob_client.get(browse.object_url(layout.name, key))
    assert response.status_code == 403
    [event] = denials()
    assert event.details == {"what": "object", "reason": "key outside grant"}
    assert event.key == key


def test_it_denies_a_key_over_1024_bytes(alice_client, layout):
    key = "é" * 513  # 1,026 bytes
    response = alice_client.get(browse.object_url(layout.name, key))
    assert response.status_code == 404
    assert denials()[0].details == {"what": "object", "reason": "invalid key"}


def test_it_denies_a_bucket_that_is_not_granted(alice_client, layout, s3_client):
    other = Bucket.objects.create(name="other-bucket", endpoint_url=layout.endpoint_url, region="us-east-1")
    s3_client.create_bucket(Bucket=other.name)
    put(s3_client, other, ["private.txt"])
    response = alice_client.get("/browse/other-bucket/")
    assert response.status_code == 404
    assert b"private.txt" not in response.content
    assert alice_client.get("/object/other-bucket/private.txt").status_code == 404
    assert [e.bucket for e in denials()] == ["other-bucket", "other-bucket"]


def test_it_ignores_keys_outside_the_folder_even_with_a_tampered_token(bob_client, layout):
    response = bob_client.get(f"/browse/{layout.name}/team-a/?token=garbage")
    # nanio may reject the token (a 400 page) or ignore it; never a listing outside the folder.
    assert response.status_code in (200, 400)
    assert b"team-a-secret" not in response.content and b"readme" not in response.content


def test_it_redirects_a_folder_without_its_slash(alice_client, layout):
    response = alice_client.get(f"/browse/{layout.name}/team-a")
    assert response.status_code == 302
    assert response["Location"] == f"/browse/{layout.name}/team-a/"


# --- object page ----------------------------------------------------------------------

def test_it_shows_an_objects_details(alice_client, layout, s3_client):
    s3_client.put_object(Bucket=layout.name, Key="team-a/data.csv", Body=b"a,b\n1,2\n", ContentType="text/csv",
                         Metadata={"owner": "finance", "note": "<b>q1</b>"})
    response = alice_client.get(f"/object/{layout.name}/team-a/data.csv")
    assert response.status_code == 200
    body = response.content.decode()
    assert "text/csv" in body
    assert "8 bytes" in body
    assert "x-amz-meta-owner" in body and "finance" in body
    assert "&lt;b&gt;q1&lt;/b&gt;" in body
    etag = s3_client.head_object(Bucket=layout.name, Key="team-a/data.csv")["ETag"].strip('"')
    assert etag in body
    assert 'aria-current="page" class="mono">data.csv<' in body
    assert ">Share</a>" in body


def test_it_shows_no_share_control_without_can_share(bob_client, layout, grants):
    Grant.objects.filter(pk=grants["bob"].pk).update(can_share=False)
    assert b">Share</a>" not in bob_client.get(f"/browse/{layout.name}/team-a/").content
    assert b">Share</a>" not in bob_client.get(f"/object/{layout.name}/team-a/report.pdf").content


def test_it_says_when_an_object_is_gone(alice_client, layout):
    response = alice_client.get(f"/object/{layout.name}/team-a/deleted.txt")
    assert response.status_code == 404
    assert b"That object does not exist" in response.content


def test_it_shows_times_in_the_users_time_zone(alice_client, layout):
    alice_client.cookies["tz"] = "Asia/Kolkata"
    response = alice_client.get(f"/browse/{layout.name}/")
    assert b"IST" in response.content


# --- odd keys -------------------------------------------------------------------------

# Keys nanio stores and serves (it verifies signatures, so these prove the real path).
NANIO_KEYS = [
    "odd/with space.txt",
    "odd/plus+sign.txt",
    "odd/100%.txt",
    "odd/hash#tag.txt",
    "odd/a=b&c=d.txt",
    "odd/ümlaut 日本.txt",
    "odd/<script>alert(1)<script>.txt",
    "odd/quote\"'.txt",
]
# Legal S3 keys that nanio 0.1.7 refuses (InvalidObjectName, 400, or a signature
# mismatch on its side): tested on moto, which stores them as S3 does.
MOTO_KEYS = [
    "odd/100%25.txt",
    "odd/what?.txt",
    "odd/dots/../up.txt",
    "odd/./here.txt",
    "odd/..",
    "odd//double.txt",
    "odd/trailing/",
    "/leading-slash.txt",
    "/",
]
# Neither server stores a newline in a key; the URL round-trip is still tested.
ALL_KEYS = NANIO_KEYS + MOTO_KEYS + ["odd/new\nline.txt", "odd/tab\t.txt", "é" * 512]


@pytest.fixture(scope="module")
def moto_endpoint(local_s3):
    """An in-memory moto S3 (no signature checks; fine for listing and HeadObject).
    Depends on local_s3 for the test credentials in the environment."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def moto_bucket(db, moto_endpoint, grants, alice, bob) -> Bucket:
    """A bucket on moto with the LAYOUT and the odd keys, granted like s3_bucket."""
    import boto3
    from botocore.config import Config

    bucket = Bucket.objects.create(name=f"m-{uuid.uuid4().hex[:12]}", region="us-east-1", endpoint_url=moto_endpoint)
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1",
                          config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
    client.create_bucket(Bucket=bucket.name)
    for key in LAYOUT + NANIO_KEYS + MOTO_KEYS:
        client.put_object(Bucket=bucket.name, Key=key, Body=b"odd")
    team = Group.objects.get(name="Team")
    Grant.objects.create(bucket=bucket, group=team, prefix="")
    Grant.objects.create(bucket=bucket, user=bob, prefix="team-a/")
    return bucket


@pytest.fixture
def odd(s3_client, s3_bucket, grants):
    put(s3_client, s3_bucket, NANIO_KEYS, body=b"odd")
    return s3_bucket


@pytest.mark.parametrize("key", ALL_KEYS)
def test_its_urls_carry_every_legal_key_verbatim(key):
    url = browse.object_url("b", key)
    assert "#" not in url and ("?" not in url or "?key=" in url)
    parts = urllib.parse.urlsplit(url)
    # What a WSGI server hands Django: the percent-decoded path (and the query).
    match = resolve(urllib.parse.unquote(parts.path))
    found = match.kwargs.get("key") or urllib.parse.parse_qs(parts.query)["key"][0]
    assert found == key
    assert match.url_name in ("browse_object", "browse_object_root")
    folder = key.rsplit("/", 1)[0] + "/" if "/" in key else key + "/"
    folder_parts = urllib.parse.urlsplit(browse.folder_url("b", folder))
    match = resolve(urllib.parse.unquote(folder_parts.path))
    assert (match.kwargs.get("folder") or urllib.parse.parse_qs(folder_parts.query)["prefix"][0]) == folder


@pytest.mark.parametrize("key", NANIO_KEYS)
def test_it_opens_odd_keys_on_nanio(alice_client, odd, key):
    response = alice_client.get(browse.object_url(odd.name, key))
    assert response.status_code == 200, key
    assert html.escape(key).encode() in response.content
    assert b"<script>alert" not in response.content


def test_it_lists_odd_keys_on_nanio_escaped_with_links_that_open(alice_client, odd):
    response = alice_client.get(f"/browse/{odd.name}/odd/")
    body = response.content.decode()
    assert "<script>alert" not in body
    assert sorted(names_on(response)) == sorted(k[len("odd/"):] for k in NANIO_KEYS)
    hrefs = re.findall(r'<tr class="browse-file">\s*<td><a class="mono" href="([^"]*)"', body)
    assert len(hrefs) == len(NANIO_KEYS)
    for href in hrefs:
        assert alice_client.get(html.unescape(href)).status_code == 200, href
    for key in NANIO_KEYS:  # each Share button names its exact key
        assert html.escape(browse.share_url(odd.name, key)) in body, key


@pytest.mark.parametrize("key", MOTO_KEYS)
def test_it_opens_keys_nanio_refuses_on_moto(alice_client, moto_bucket, key):
    response = alice_client.get(browse.object_url(moto_bucket.name, key))
    assert response.status_code == 200, key
    assert f'<td class="mono">{html.escape(key)}</td>'.encode() in response.content


def test_it_lists_folders_with_odd_names_on_moto(alice_client, moto_bucket):
    def names(folder: str) -> list[str]:
        response = alice_client.get(browse.folder_url(moto_bucket.name, folder))
        assert response.status_code == 200, folder
        return names_on(response)

    assert names("") == ["/", "odd/", "team-a-secret/", "team-a/", "team-b/", "readme.txt"]
    assert names("/") == ["/", "leading-slash.txt"]  # "/" is itself a key under the folder "/"
    listing = names("odd/")
    assert listing == sorted(n for n in listing if n.endswith("/")) + sorted(n for n in listing if not n.endswith("/"))
    assert {"./", "/", "dots/", "trailing/"} <= set(listing) and {"..", "what?.txt", "100%25.txt"} <= set(listing)
    assert names("odd/dots/") == ["../"]
    assert names("odd/dots/../") == ["up.txt"]
    assert names("odd/./") == ["here.txt"]
    assert names("odd//") == ["double.txt"]
    # Every link on the odd folder's page opens.
    body = alice_client.get(browse.folder_url(moto_bucket.name, "odd/")).content.decode()
    for href in re.findall(r'<tr class="browse-(?:file|folder)">\s*<td><a class="mono" href="([^"]*)"', body):
        assert alice_client.get(html.unescape(href)).status_code == 200, href


def test_it_treats_dot_segments_as_literal_keys_on_moto(bob_client, moto_bucket):
    # To S3, "team-a/../team-a-secret/x" is a key *inside* team-a/: it does not
    # exist, and team-a-secret/x stays out of reach.
    response = bob_client.get(browse.object_url(moto_bucket.name, "team-a/../team-a-secret/x"))
    assert response.status_code == 404
    assert b"That object does not exist" in response.content


def test_it_builds_share_links_that_carry_the_exact_key():
    for key in ALL_KEYS:
        query = urllib.parse.urlsplit(browse.share_url("b", key)).query
        assert urllib.parse.parse_qs(query) == {"bucket": ["b"], "key": [key]}


# --- filter and paging -------------------------------------------------------------------

def seed(s3_client, bucket: Bucket, keys: list[str]) -> None:
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda key: s3_client.put_object(Bucket=bucket.name, Key=key, Body=b""), keys))


def test_it_filters_by_name_prefix_on_the_server(alice_client, layout, s3_client):
    put(s3_client, layout, ["team-a/report-2023.pdf", "team-a/summary.txt"])
    response = alice_client.get(f"/browse/{layout.name}/team-a/?q=report")
    assert names_on(response) == ["report-2023.pdf", "report.pdf"]
    assert b'value="report"' in response.content


def test_it_filters_bobs_partial_view_too(bob_client, layout):
    assert names_on(bob_client.get(f"/browse/{layout.name}/?q=team-b")) == []
    assert names_on(bob_client.get(f"/browse/{layout.name}/?q=team")) == ["team-a/"]


@pytest.mark.slow
def test_it_pages_through_2500_objects_visiting_each_exactly_once(alice_client, s3_client, s3_bucket, grants):
    keys = [f"big/file-{i:05d}.bin" for i in range(2500)]
    seed(s3_client, s3_bucket, keys)
    seen: list[str] = []
    pages = []
    url = f"/browse/{s3_bucket.name}/big/"
    while url:
        response = alice_client.get(url)
        assert response.status_code == 200
        pages.append(url)
        seen += names_on(response)
        url = links_on(response, "next")
    assert len(pages) in (25, 26)  # nanio may announce one more, empty, page after an exact multiple
    assert seen == [k[len("big/"):] for k in keys]
    # Previous walks back through the same pages.
    response = alice_client.get(pages[-1])
    back = links_on(response, "prev")
    assert back == pages[-2]
    assert links_on(alice_client.get(pages[1]), "prev") == pages[0]


def test_it_honours_the_page_size_up_to_1000(alice_client, s3_client, s3_bucket, grants):
    seed(s3_client, s3_bucket, [f"f{i:03d}" for i in range(12)])
    response = alice_client.get(f"/browse/{s3_bucket.name}/?size=5")
    assert len(names_on(response)) == 5
    assert "size=5" in links_on(response, "next")
    assert len(names_on(alice_client.get(f"/browse/{s3_bucket.name}/?size=50000"))) == 12
    assert len(names_on(alice_client.get(f"/browse/{s3_bucket.name}/?size=nope"))) == 12


def test_it_makes_one_list_call_per_page_view(alice_client, layout, monkeypatch):
    from shares import s3

    calls = []
    original = s3.list_page
    monkeypatch.setattr(s3, "list_page", lambda *a, **k: calls.append(k) or original(*a, **k))
    alice_client.get(f"/browse/{layout.name}/team-a/")
    assert len(calls) == 1 and calls[0]["page_size"] == 100


# --- region and S3 failures ------------------------------------------------------------

def test_it_learns_a_missing_region_on_first_use(alice_client, layout):
    Bucket.objects.filter(pk=layout.pk).update(region="")
    assert alice_client.get(f"/browse/{layout.name}/").status_code == 200
    layout.refresh_from_db()
    assert layout.region == "us-east-1" and layout.region_learned


def test_it_explains_an_endpoint_that_is_down(alice_client, layout):
    Bucket.objects.filter(pk=layout.pk).update(endpoint_url=f"http://127.0.0.1:{free_port()}")
    response = alice_client.get(f"/browse/{layout.name}/")
    assert response.status_code == 502
    assert b"The S3 endpoint cannot be reached" in response.content
    assert alice_client.get(f"/object/{layout.name}/readme.txt").status_code == 502


def test_it_explains_a_bucket_that_does_not_exist(alice_client, s3_bucket, grants, s3_client):
    s3_client.delete_bucket(Bucket=s3_bucket.name)
    response = alice_client.get(f"/browse/{s3_bucket.name}/")
    assert response.status_code == 404
    assert f"The bucket “{s3_bucket.name}” does not exist".encode() in response.content


def test_it_explains_access_denied_by_s3(alice_client, layout, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
    from shares import s3

    s3.clear_clients()
    try:
        response = alice_client.get(f"/browse/{layout.name}/")
    finally:
        monkeypatch.undo()
        s3.clear_clients()
    assert response.status_code in (403, 502)
    assert b"S3 denied access" in response.content
    assert b"wrong-secret" not in response.content


def test_it_explains_an_endpoint_that_does_not_answer_in_time(alice_client, layout, settings):
    import socket

    from shares import s3

    # A socket that completes the TCP handshake (listen backlog) but never answers.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    settings.S3_READ_TIMEOUT = 1
    settings.S3_MAX_ATTEMPTS = 1
    try:
        Bucket.objects.filter(pk=layout.pk).update(endpoint_url=f"http://127.0.0.1:{silent.getsockname()[1]}")
        response = alice_client.get(f"/browse/{layout.name}/")
    finally:
        silent.close()
        s3.clear_clients()
    assert response.status_code == 504
    assert b"The S3 endpoint did not answer in time" in response.content


@pytest.mark.parametrize("code, status, http, message", [
    ("AuthorizationHeaderMalformed", 400, 502, "is in another region than the one configured"),
    ("PermanentRedirect", 301, 502, "is in another region than the one configured"),
    ("AccessDenied", 403, 403, "S3 denied access"),
    ("NoSuchBucket", 404, 404, "does not exist"),
    ("SlowDown", 503, 502, "S3 answered an error (SlowDown)"),
])
def test_it_words_s3_errors_that_nanio_cannot_produce(alice_client, layout, code, status, http, message):
    """nanio ignores the signing region; botocore's Stubber makes the portal's own
    cached client answer as AWS would."""
    from botocore.stub import Stubber

    from shares import s3

    client = s3.client_for(s3.BucketConfig.from_bucket(layout))
    with Stubber(client) as stubber:
        stubber.add_client_error("list_objects_v2", service_error_code=code, http_status_code=status)
        response = alice_client.get(f"/browse/{layout.name}/")
    assert response.status_code == http
    assert message.encode() in response.content


def test_the_portals_client_reads_the_same_times_as_plain_boto3(layout, s3_client):
    """shares/s3.py parses timestamps with datetime.fromisoformat, not dateutil."""
    from shares import s3

    config = s3.BucketConfig.from_bucket(layout)
    page = s3.list_page(config, prefix="team-a/")
    plain = {item["Key"]: item["LastModified"] for item in
             s3_client.list_objects_v2(Bucket=layout.name, Prefix="team-a/", Delimiter="/")["Contents"]}
    assert {f.key: f.last_modified for f in page.files} == plain
    assert all(f.last_modified.utcoffset() is not None for f in page.files)
    head = s3.head_object(config, "team-a/report.pdf")  # an RFC 822 header: botocore's own parser
    assert head.last_modified == s3_client.head_object(Bucket=layout.name, Key="team-a/report.pdf")["LastModified"]
