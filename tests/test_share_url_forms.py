"""The form of direct links for AWS hosts, without a network (signing is local).

What S3 needs (s3-facts.md): SigV4 always; the bucket's own region in the
credential scope; the regional host in every partition, never the global host;
path style on the regional endpoint for dotted names; the public endpoint for
S3-compatible stores."""
from __future__ import annotations

import urllib.parse

import pytest

from shares import s3


@pytest.fixture(autouse=True)
def fake_credentials(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    s3.clear_clients()
    yield
    s3.clear_clients()


def sign(name: str, key: str = "t st/i+.png", **config) -> str:
    return s3.presign_get(s3.BucketConfig(name=name, **config), key, expires_in=3600, attachment=False)


def scope_region(url: str) -> str:
    credential = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["X-Amz-Credential"][0]
    return credential.split("/")[2]


def test_the_seed_bucket_gets_the_china_regional_host():
    url = sign("newtestout", "test/image.png", region="cn-northwest-1")
    assert url.startswith("https://newtestout.s3.cn-northwest-1.amazonaws.com.cn/test/image.png?"
                          "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F")
    assert scope_region(url) == "cn-northwest-1"
    assert "&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature=" in url


@pytest.mark.parametrize("region,host", [
    ("us-east-1", "examplebucket.s3.us-east-1.amazonaws.com"),
    ("eu-west-1", "examplebucket.s3.eu-west-1.amazonaws.com"),
    ("ap-east-1", "examplebucket.s3.ap-east-1.amazonaws.com"),  # opened after March 2019
    ("us-gov-west-1", "examplebucket.s3.us-gov-west-1.amazonaws.com"),
    ("cn-north-1", "examplebucket.s3.cn-north-1.amazonaws.com.cn"),
])
def test_every_region_gets_its_regional_host_and_scope(region, host):
    url = sign("examplebucket", region=region)
    parts = urllib.parse.urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", host, "/t%20st/i%2B.png")
    assert scope_region(url) == region
    assert "s3.amazonaws.com" not in parts.netloc or region == "us-east-1"


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1"])
def test_a_dotted_bucket_uses_path_style_on_the_regional_endpoint(region):
    url = sign("my.bucket", "key", region=region)
    assert url.startswith(f"https://s3.{region}.amazonaws.com/my.bucket/key?X-Amz-Algorithm=AWS4-HMAC-SHA256&")


def test_a_custom_endpoint_is_signed_for_its_public_host():
    url = sign("examplebucket", "a/b.txt", endpoint_url="http://minio.internal:9000",
               public_endpoint_url="https://files.example.com")
    assert url.startswith("https://files.example.com/examplebucket/a/b.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256&")


def test_a_custom_endpoint_alone_gets_path_style():
    url = sign("examplebucket", "k", endpoint_url="https://acc.r2.cloudflarestorage.com", region="auto")
    assert url.startswith("https://acc.r2.cloudflarestorage.com/examplebucket/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&")
    assert scope_region(url) == "auto"


def test_it_never_emits_a_sigv2_url():
    url = sign("examplebucket", "k", endpoint_url="http://127.0.0.1:9000")
    assert "AWSAccessKeyId=" not in url and "X-Amz-Algorithm=AWS4-HMAC-SHA256" in url


@pytest.mark.parametrize("expires_in", [0, 604801])
def test_it_refuses_to_sign_outside_1_to_604800(expires_in):
    with pytest.raises(s3.S3Error):
        s3.presign_get(s3.BucketConfig(name="examplebucket", region="us-east-1"), "k", expires_in=expires_in)


def test_the_disposition_is_signed_in_with_an_ascii_fallback():
    url = s3.presign_get(s3.BucketConfig(name="examplebucket", region="eu-west-1"), "dir/Ünï\r\n\"q\".pdf",
                         expires_in=60)
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert query["response-content-disposition"] == [
        "attachment; filename=\"_n____q_.pdf\"; filename*=UTF-8''%C3%9Cn%C3%AF%0D%0A%22q%22.pdf"]
    assert url.index("response-content-disposition") < url.index("X-Amz-Signature")
