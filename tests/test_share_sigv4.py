"""The local SigV4 presigner (shares/sigv4.py): the URL botocore makes, byte for byte.

Both sign at the same frozen instant (time_machine freezes the clock both read).
`signed_both_ways` first lets the portal learn the client's template, then takes
botocore's own URL, then signs with the portal while the client's
generate_presigned_url raises: a fallback to botocore would fail the test, so
each equality below is the local signer's. The nanio tests prove the links work.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import urllib.parse
from unittest import mock

import pytest
import time_machine

from shares import s3
from tests.sharecore_fixtures import NANIO_REFUSED_KEYS, ODD_KEYS, fetch

AT = dt.datetime(2026, 6, 13, 5, 36, 28, tzinfo=dt.timezone.utc)
ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"

KEYS = ODD_KEYS + NANIO_REFUSED_KEYS + [
    "ü", "+", "%", "#", "?", "a b", "..", ".", "//", "/", "/leading", "~tilde~", "trailing/", "a%2Fb", "%%41",
    "tab\tnew\nline\rcr", "emoji 😀/ok.txt", "x" * 1024, "é" * 512, "日本" * 170 + "a",
    "".join(chr(c) for c in range(1, 128)),  # every ASCII character, controls included
    "".join(chr(c) for c in range(0xA0, 0x180)) + "\u2028\ufeff\uffff",
]


@pytest.fixture(autouse=True)
def fake_credentials(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    for name in ("AWS_SESSION_TOKEN", "AWS_CREDENTIAL_EXPIRATION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    s3.clear_clients()
    yield
    s3.clear_clients()


def botocore_url(config: s3.BucketConfig, key: str, *, expires_in: int, attachment: bool = True) -> str:
    """What presign_get() returned before the local signer: botocore's URL in aws-cli order."""
    params = {"Bucket": config.name, "Key": key}
    if attachment:
        params["ResponseContentDisposition"] = s3.content_disposition(key)
    client = s3.client_for(config, public=True)
    return s3._aws_cli_order(client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_in))


def signed_locally(config: s3.BucketConfig, key: str, *, expires_in: int, attachment: bool = True) -> str:
    """presign_get() with botocore's signer out of reach (after the template is learned)."""
    s3.presign_get(config, "warm-up", expires_in=60)
    client = s3.client_for(config, public=True)
    with mock.patch.object(client, "generate_presigned_url", side_effect=AssertionError("botocore signed")):
        return s3.presign_get(config, key, expires_in=expires_in, attachment=attachment)


def signed_both_ways(config: s3.BucketConfig, key: str, *, expires_in: int = 3600, attachment: bool = True,
                     at: dt.datetime = AT) -> tuple[str, str]:
    with time_machine.travel(at, tick=False):
        mine = signed_locally(config, key, expires_in=expires_in, attachment=attachment)
        theirs = botocore_url(config, key, expires_in=expires_in, attachment=attachment)
    return mine, theirs


def query(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in urllib.parse.parse_qs(urllib.parse.urlsplit(url).query).items()}


# --- byte for byte ----------------------------------------------------------------------

@pytest.mark.parametrize("key", KEYS, ids=range(len(KEYS)))
@pytest.mark.parametrize("style", ["virtual", "path"])
def test_it_signs_every_key_as_botocore_does(key, style):
    config = s3.BucketConfig(name="examplebucket", region="eu-west-1", addressing_style=style)
    mine, theirs = signed_both_ways(config, key)
    assert mine == theirs


@pytest.mark.parametrize("key", ["a b/ü+.txt", "/leading", "x" * 1024])
def test_it_signs_without_a_disposition_as_botocore_does(key):
    mine, theirs = signed_both_ways(s3.BucketConfig(name="examplebucket", region="us-east-1"), key, attachment=False)
    assert mine == theirs
    assert "response-content-disposition" not in mine


CONFIGS = {
    "us-east-1": s3.BucketConfig(name="examplebucket", region="us-east-1"),
    "us-gov": s3.BucketConfig(name="examplebucket", region="us-gov-west-1"),
    "china": s3.BucketConfig(name="examplebucket", region="cn-north-1"),
    "iso": s3.BucketConfig(name="examplebucket", region="us-iso-east-1"),
    "dotted, auto": s3.BucketConfig(name="my.dotted.bucket", region="eu-west-1"),
    "dotted, virtual": s3.BucketConfig(name="my.dotted.bucket", region="eu-west-1", addressing_style="virtual"),
    "no region": s3.BucketConfig(name="examplebucket"),
    "endpoint with a port": s3.BucketConfig(name="bucket", endpoint_url="http://127.0.0.1:9000"),
    "endpoint, virtual": s3.BucketConfig(name="bucket", endpoint_url="http://minio.internal:9000",
                                         addressing_style="virtual"),
    "public endpoint": s3.BucketConfig(name="bucket", endpoint_url="http://minio.internal:9000",
                                       public_endpoint_url="https://Files.Example.COM:8443"),
    "public endpoint, default port": s3.BucketConfig(name="bucket", endpoint_url="http://minio.internal:9000",
                                                     public_endpoint_url="https://files.example.com:443"),
    "public endpoint with a path": s3.BucketConfig(name="bucket", endpoint_url="http://minio.internal:9000",
                                                   public_endpoint_url="https://files.example.com/s3/"),
    "IPv6 endpoint": s3.BucketConfig(name="bucket", endpoint_url="http://[::1]:9000"),
    "R2": s3.BucketConfig(name="bucket", endpoint_url="https://acc.r2.cloudflarestorage.com", region="auto"),
}


@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
def test_it_signs_every_bucket_configuration_as_botocore_does(config):
    for key in ("reports/Q1 report.pdf", "/lead//ü+%.txt"):
        mine, theirs = signed_both_ways(config, key)
        assert mine == theirs


def test_it_signs_the_seed_bucket_on_its_china_regional_host():
    config = s3.BucketConfig(name="newtestout", region="cn-northwest-1")
    mine, theirs = signed_both_ways(config, "test/image.png", expires_in=604800, attachment=False)
    assert mine == theirs
    assert mine.startswith(
        "https://newtestout.s3.cn-northwest-1.amazonaws.com.cn/test/image.png?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        f"&X-Amz-Credential={ACCESS_KEY}%2F20260613%2Fcn-northwest-1%2Fs3%2Faws4_request&X-Amz-Date=20260613T053628Z"
        "&X-Amz-Expires=604800&X-Amz-SignedHeaders=host&X-Amz-Signature=")


@pytest.mark.parametrize("expires_in", [1, 604800])
def test_it_signs_the_shortest_and_longest_expiry_as_botocore_does(expires_in):
    mine, theirs = signed_both_ways(s3.BucketConfig(name="examplebucket", region="eu-west-1"), "k.txt",
                                    expires_in=expires_in)
    assert mine == theirs
    assert query(mine)["X-Amz-Expires"] == str(expires_in)


def test_it_signs_with_a_session_token_where_botocore_puts_it(monkeypatch):
    token = "FwoGZXIvYXdzEJr//////////wEaDOz+token/with=padding=="
    monkeypatch.setenv("AWS_SESSION_TOKEN", token)
    s3.clear_clients()
    for attachment in (True, False):
        mine, theirs = signed_both_ways(s3.BucketConfig(name="examplebucket", region="eu-west-1"), "a b.txt",
                                        attachment=attachment)
        assert mine == theirs
        assert query(mine)["X-Amz-Security-Token"] == token
        assert mine.index("X-Amz-Security-Token=") < mine.index("X-Amz-Signature=")


def test_it_signs_across_midnight_with_each_days_key():
    config = s3.BucketConfig(name="examplebucket", region="eu-west-1")
    late = dt.datetime(2026, 6, 13, 23, 59, 59, tzinfo=dt.timezone.utc)
    for at in (late, late + dt.timedelta(seconds=1), late):
        mine, theirs = signed_both_ways(config, "k.txt", at=at)
        assert mine == theirs
        assert query(mine)["X-Amz-Credential"].split("/")[1] == at.strftime("%Y%m%d")


def test_it_signs_with_new_keys_after_the_clients_are_cleared(monkeypatch):
    config = s3.BucketConfig(name="examplebucket", region="eu-west-1")
    signed_both_ways(config, "k.txt")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAROTATEDKEY000000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "rotated-secret")
    s3.clear_clients()
    mine, theirs = signed_both_ways(config, "k.txt")
    assert mine == theirs
    assert query(mine)["X-Amz-Credential"].startswith("AKIAROTATEDKEY000000/")


def test_it_signs_with_refreshed_credentials(monkeypatch, tmp_path):
    """A profile whose credential_process hands out keys that expire (as SSO or a
    role do): each link is signed with the keys of the moment, as botocore would."""
    creds = tmp_path / "creds.json"
    script = tmp_path / "creds.py"
    script.write_text(f"print(open({str(creds)!r}).read())\n")
    config_file = tmp_path / "config"
    config_file.write_text(f"[profile rotating]\ncredential_process = {sys.executable} {script}\n")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config_file))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))

    def hand_out(access_key: str, ends: dt.datetime) -> None:
        creds.write_text(json.dumps({"Version": 1, "AccessKeyId": access_key, "SecretAccessKey": access_key + "-secret",
                                     "SessionToken": access_key + "/token+", "Expiration": ends.isoformat()}))

    config = s3.BucketConfig(name="examplebucket", region="eu-west-1", profile="rotating")
    hand_out("ASIAFIRST00000000000", AT + dt.timedelta(hours=1))
    s3.clear_clients()
    mine, theirs = signed_both_ways(config, "k.txt")
    assert mine == theirs and query(mine)["X-Amz-Credential"].startswith("ASIAFIRST00000000000/")
    hand_out("ASIASECOND0000000000", AT + dt.timedelta(hours=3))
    # Five minutes before the first keys end: botocore must refresh them.
    mine, theirs = signed_both_ways(config, "k.txt", at=AT + dt.timedelta(minutes=55))
    assert mine == theirs
    assert query(mine)["X-Amz-Credential"].startswith("ASIASECOND0000000000/")
    assert query(mine)["X-Amz-Security-Token"] == "ASIASECOND0000000000/token+"


# --- falling back to botocore --------------------------------------------------------------

def test_without_credentials_it_still_says_so_plainly(monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    s3.clear_clients()
    for _ in range(2):  # learning and after
        with pytest.raises(s3.S3Error) as caught:
            s3.presign_get(s3.BucketConfig(name="examplebucket", region="eu-west-1"), "k.txt", expires_in=60)
        assert caught.value.message == ("The portal has no AWS credentials. Configure them on the server "
                                        "(environment, profile or instance role).")


def test_a_client_botocore_signs_differently_keeps_botocores_url(caplog):
    """Anything the template cannot reproduce (here an extra signed header added
    by a handler) leaves signing to botocore, with the same URL as before."""
    config = s3.BucketConfig(name="examplebucket", region="eu-west-1")
    client = s3.client_for(config, public=True)

    def add_header(request, **kwargs):
        request.headers["x-amz-meta-origin"] = "portal"

    client.meta.events.register("before-sign.s3.GetObject", add_header)
    with time_machine.travel(AT, tick=False), caplog.at_level(logging.WARNING, logger="shares.s3"):
        first = s3.presign_get(config, "k.txt", expires_in=60)
        again = s3.presign_get(config, "k.txt", expires_in=60)
        theirs = botocore_url(config, "k.txt", expires_in=60)
    assert first == again == theirs
    assert query(first)["X-Amz-SignedHeaders"] == "host;x-amz-meta-origin"
    assert caplog.text.count("botocore keeps signing") == 1
    assert query(first)["X-Amz-Signature"] not in caplog.text


def test_an_empty_key_is_still_refused_as_before():
    with pytest.raises(s3.S3Error) as caught:
        s3.presign_get(s3.BucketConfig(name="examplebucket", region="eu-west-1"), "", expires_in=60)
    assert caught.value.status == 502 and caught.value.code == "ParamValidationError"


# --- for real, on nanio ------------------------------------------------------------------------

@pytest.fixture
def nanio_credentials(local_s3, monkeypatch):
    """nanio's keys again (the autouse fixture above swapped in example keys)."""
    for name, value in local_s3.aws_env().items():
        monkeypatch.setenv(name, value)
    s3.clear_clients()


NANIO_KEYS = ["plain.txt", "with space.txt", "a+b.txt", "100%.txt", "hash#tag.txt", "what?.txt",
              "ünïcødé/日本語 ファイル.txt", "~tilde/(x)[y]=z;'.txt"]


@pytest.mark.parametrize("key", NANIO_KEYS)
def test_a_locally_signed_link_downloads_the_bytes(nanio_credentials, s3_bucket, put_object, key):
    body = put_object(key, f"bytes of {key} \x00\xff".encode())
    config = s3.BucketConfig.from_bucket(s3_bucket)
    url = signed_locally(config, key, expires_in=60)
    assert fetch(url)[:2] == (200, body)


def test_a_tampered_link_is_refused(nanio_credentials, s3_bucket, put_object):
    put_object("a b.txt")
    put_object("a c.txt")
    url = signed_locally(s3.BucketConfig.from_bucket(s3_bucket), "a b.txt", expires_in=60)
    signature = query(url)["X-Amz-Signature"]
    tampered = [
        url.replace("/a%20b.txt?", "/a%20c.txt?"),  # another object
        url.replace("X-Amz-Expires=60", "X-Amz-Expires=600"),  # a longer life
        url.replace(signature, ("0" if signature[0] != "0" else "1") + signature[1:]),
    ]
    assert fetch(url)[0] == 200
    for changed in tampered:
        assert changed != url
        assert fetch(changed)[0] == 403
