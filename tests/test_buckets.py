"""The bucket registry and grants: admin forms and `manage.py add_bucket`, on nanio."""
from __future__ import annotations

import io
import subprocess
import sys
import uuid

import pytest
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command

from shares.local_s3 import free_port
from shares.models import Bucket, Grant

from .conftest import ROOT


def bucket_form(name: str, **overrides) -> dict:
    data = {
        "name": name, "label": "", "region": "", "endpoint_url": "", "public_endpoint_url": "",
        "addressing_style": "auto", "aws_profile": "", "enabled": "on", "default_expiry": "3600",
        "max_expiry": "604800",
    }
    data.update(overrides)
    return data


@pytest.fixture
def nanio_bucket_name(local_s3, s3_client) -> str:
    name = f"n-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    return name


# --- admin: buckets ------------------------------------------------------------------

def test_it_learns_the_region_when_an_admin_leaves_it_blank(admin_client, local_s3, nanio_bucket_name):
    response = admin_client.post("/admin/shares/bucket/add/",
                                 bucket_form(nanio_bucket_name, endpoint_url=local_s3.endpoint_url))
    assert response.status_code == 302, response.content
    bucket = Bucket.objects.get(name=nanio_bucket_name)
    assert bucket.region == local_s3.region
    assert bucket.region_learned


def test_it_keeps_a_region_the_admin_typed(admin_client, local_s3, nanio_bucket_name):
    admin_client.post("/admin/shares/bucket/add/", bucket_form(nanio_bucket_name, region="eu-central-1",
                                                               endpoint_url=local_s3.endpoint_url))
    bucket = Bucket.objects.get(name=nanio_bucket_name)
    assert (bucket.region, bucket.region_learned) == ("eu-central-1", False)


def test_it_saves_a_bucket_whose_endpoint_is_down_and_says_so(admin_client, db):
    endpoint = f"http://127.0.0.1:{free_port()}"
    response = admin_client.post("/admin/shares/bucket/add/", bucket_form("down-bucket", endpoint_url=endpoint),
                                 follow=True)
    assert response.status_code == 200
    assert "could not be learned now" in response.content.decode()
    assert Bucket.objects.get(name="down-bucket").region == ""


@pytest.mark.parametrize("endpoint, message", [
    ("ftp://minio.example.com", "Enter an http:// or https:// URL with a host"),
    ("https://minio.example.com/some/path", "no path, query or credentials"),
    ("https://user:pw@minio.example.com", "no path, query or credentials"),
    ("https://minio.example.com:99999", "The port is not a number between 0 and 65535."),
])
def test_it_rejects_bad_endpoint_urls(admin_client, db, endpoint, message):
    response = admin_client.post("/admin/shares/bucket/add/", bucket_form("some-bucket", endpoint_url=endpoint))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Bucket.objects.exists()


def test_it_rejects_a_default_expiry_over_the_maximum(admin_client, db):
    response = admin_client.post("/admin/shares/bucket/add/",
                                 bucket_form("some-bucket", region="us-east-1", default_expiry="7200",
                                             max_expiry="3600"))
    assert "cannot be longer than the maximum" in response.content.decode()
    assert not Bucket.objects.exists()


def test_it_rejects_a_bad_bucket_name(admin_client, db):
    response = admin_client.post("/admin/shares/bucket/add/", bucket_form("Bad_Name", region="us-east-1"))
    assert "Bucket names are 3–63 characters" in response.content.decode()


# --- admin: grants ---------------------------------------------------------------------

def grant_form(bucket: Bucket, **overrides) -> dict:
    data = {"bucket": bucket.pk, "group": "", "user": "", "prefix": "", "can_share": "on", "max_expiry": "86400"}
    data.update(overrides)
    return data


def test_it_makes_a_grant_prefix_a_folder(admin_client, s3_bucket, bob):
    response = admin_client.post("/admin/shares/grant/add/", grant_form(s3_bucket, user=bob.pk, prefix="team-a"))
    assert response.status_code == 302, response.content
    assert Grant.objects.get().prefix == "team-a/"


def test_it_keeps_a_whole_bucket_grant_blank(admin_client, s3_bucket, alice):
    team = Group.objects.get(name="Team")
    admin_client.post("/admin/shares/grant/add/", grant_form(s3_bucket, group=team.pk))
    assert Grant.objects.get().prefix == ""


def test_it_never_rewrites_a_prefix_beyond_the_trailing_slash(admin_client, s3_bucket, bob):
    admin_client.post("/admin/shares/grant/add/", grant_form(s3_bucket, user=bob.pk, prefix=" odd//a b"))
    assert Grant.objects.get().prefix == " odd//a b/"


@pytest.mark.parametrize("who", ["both", "neither"])
def test_it_requires_exactly_one_grantee(admin_client, s3_bucket, bob, alice, who):
    team = Group.objects.get(name="Team")
    extra = {"user": bob.pk, "group": team.pk} if who == "both" else {}
    response = admin_client.post("/admin/shares/grant/add/", grant_form(s3_bucket, **extra))
    assert response.status_code == 200
    assert "exactly one of them" in response.content.decode()
    assert not Grant.objects.exists()


def test_it_rejects_a_prefix_over_1024_bytes(admin_client, s3_bucket, bob):
    response = admin_client.post("/admin/shares/grant/add/", grant_form(s3_bucket, user=bob.pk, prefix="é" * 600))
    assert response.status_code == 200
    assert not Grant.objects.exists()


def test_a_normalised_grant_never_covers_a_sibling_folder(bob_client, s3_bucket, s3_client, bob, admin_client):
    s3_client.put_object(Bucket=s3_bucket.name, Key="team-a-secret/x", Body=b"secret")
    admin_client.post("/admin/shares/grant/add/", grant_form(s3_bucket, user=bob.pk, prefix="team-a"))
    assert bob_client.get(f"/browse/{s3_bucket.name}/team-a-secret/").status_code == 403
    assert bob_client.get(f"/object/{s3_bucket.name}/team-a-secret/x").status_code == 403


# --- manage.py add_bucket -----------------------------------------------------------------

def run_add_bucket(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("add_bucket", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_add_bucket_registers_a_bucket_and_learns_its_region(local_s3, nanio_bucket_name, db):
    out, err = run_add_bucket(nanio_bucket_name, "--endpoint-url", local_s3.endpoint_url, "--label", "Demo")
    bucket = Bucket.objects.get(name=nanio_bucket_name)
    assert (bucket.label, bucket.region, bucket.region_learned) == ("Demo", local_s3.region, True)
    assert out == f"Registered bucket {nanio_bucket_name} ({local_s3.region}).\n"
    assert err == ""


def test_add_bucket_updates_an_existing_entry(local_s3, nanio_bucket_name, db):
    run_add_bucket(nanio_bucket_name, "--endpoint-url", local_s3.endpoint_url, "--label", "Old")
    out, _ = run_add_bucket(nanio_bucket_name, "--label", "New", "--region", "eu-west-1",
                            "--public-endpoint-url", "https://files.example.com")
    bucket = Bucket.objects.get(name=nanio_bucket_name)
    assert Bucket.objects.count() == 1
    assert (bucket.label, bucket.region, bucket.endpoint_url) == ("New", "eu-west-1", local_s3.endpoint_url)
    assert bucket.public_endpoint_url == "https://files.example.com"
    assert out.startswith("Updated bucket")


def test_add_bucket_warns_but_registers_when_the_endpoint_is_down(db):
    out, err = run_add_bucket("down-bucket", "--endpoint-url", f"http://127.0.0.1:{free_port()}")
    assert Bucket.objects.get(name="down-bucket").region == ""
    assert err.startswith("warning: region not learned now (The S3 endpoint cannot be reached.")


@pytest.mark.parametrize("args, message", [
    (["Bad_Name", "--region", "us-east-1"], "name: Bucket names are 3–63 characters"),
    (["good-name", "--endpoint-url", "not a url"], "endpoint-url: Enter an http:// or https:// URL"),
    (["good-name", "--public-endpoint-url", "https://x.example.com/path"], "public-endpoint-url: Enter only"),
])
def test_add_bucket_rejects_bad_input(db, args, message):
    with pytest.raises(CommandError, match=message.replace("(", r"\(")) as info:
        run_add_bucket(*args)
    assert "\n" not in str(info.value)
    assert not Bucket.objects.exists()


def test_add_bucket_prints_one_line_on_stderr_and_exits_1(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "add_bucket", "good-name", "--endpoint-url", "ftp://nope"],
        cwd=ROOT, capture_output=True, text=True, env={**__import__("os").environ, "PORTAL_DATA_DIR": str(tmp_path)},
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip().count("\n") == 0
    assert "endpoint-url: Enter an http:// or https:// URL" in result.stderr
