"""/healthz: database, broker and each enabled bucket; 503 names the failing
part; anonymous; no secrets in the answer."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import override_settings

from shares import health
from shares.local_s3 import free_port
from shares.models import Bucket

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def fresh_probes():
    health.clear_cache()
    yield
    health.clear_cache()


def test_it_reports_ok_for_database_broker_and_bucket(client, s3_bucket):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["failing"] == []
    assert body["database"] == {"ok": True}
    assert body["broker"]["ok"] is True
    assert body["buckets"] == {s3_bucket.name: {"ok": True}}
    assert response["Cache-Control"].startswith("max-age=0")


def test_it_answers_503_naming_an_unreachable_bucket(client, s3_bucket, db):
    Bucket.objects.create(name="gone-away", endpoint_url=f"http://127.0.0.1:{free_port()}", region="us-east-1")
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["bucket:gone-away"]
    assert body["buckets"]["gone-away"] == {"ok": False, "error": "EndpointUnreachable"}
    assert body["buckets"][s3_bucket.name] == {"ok": True}


def test_it_names_a_missing_bucket(client, local_s3, db):
    Bucket.objects.create(name="never-created", endpoint_url=local_s3.endpoint_url, region="us-east-1")
    body = client.get("/healthz").json()
    assert body["failing"] == ["bucket:never-created"]
    assert body["buckets"]["never-created"]["ok"] is False


def test_it_skips_disabled_buckets(client, local_s3, db):
    Bucket.objects.create(name="switched-off", endpoint_url=f"http://127.0.0.1:{free_port()}", enabled=False)
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["buckets"] == {}


def test_it_answers_503_naming_an_unreachable_broker(client, db):
    with override_settings(CELERY_BROKER_URL="redis://:broker-password@127.0.0.1:1/0"):
        response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["broker"]
    assert body["broker"] == {"ok": False, "transport": "redis", "error": "OperationalError"}
    assert b"broker-password" not in response.content and b"127.0.0.1" not in response.content


def test_it_answers_503_when_the_filesystem_queue_is_not_writable(client, db, tmp_path, settings):
    missing = tmp_path / "no-such-folder"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {**settings.CELERY_BROKER_TRANSPORT_OPTIONS,
                                                "data_folder_in": str(missing)}
    with override_settings(CELERY_BROKER_URL="filesystem://"):
        response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["broker"]["error"] == "QueueFolderNotWritable"


def test_it_caches_bucket_probes_so_healthz_cannot_hammer_s3(client, s3_bucket, monkeypatch):
    calls = []
    real = health.s3.head_bucket
    monkeypatch.setattr(health.s3, "head_bucket", lambda config: calls.append(config) or real(config))
    for _ in range(5):
        assert client.get("/healthz").status_code == 200
    assert len(calls) == 1


def test_it_needs_no_sign_in_and_rejects_post(client, db):
    assert client.get("/healthz").status_code == 200
    assert client.head("/healthz").status_code == 200
    assert client.post("/healthz").status_code == 405


def _healthz_in_subprocess(tmp_path: Path, *, migrate: bool = True, **env: str) -> tuple[int, dict, str]:
    """Django started from scratch with this environment, asked for /healthz
    through the whole middleware stack."""
    code = (
        "import django, json; django.setup()\n"
        + ("from django.core.management import call_command; call_command('migrate', verbosity=0)\n"
           if migrate else "")
        + "from django.test import Client\n"
        "r = Client().get('/healthz')\n"
        "print(r.status_code); print(r.content.decode())\n"
    )
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DJANGO_ALLOW_ASYNC"))}
    # A fresh SQLite file and the filesystem queue unless the test says otherwise,
    # whatever this test pass is configured with.
    full_env.pop("CELERY_RESULT_BACKEND", None)
    full_env.update({"DJANGO_SETTINGS_MODULE": "portal.settings", "PORTAL_DATA_DIR": str(tmp_path),
                     "ALLOWED_HOSTS": "testserver", "DATABASE_URL": f"sqlite:///{tmp_path / 'portal.sqlite3'}",
                     "CELERY_BROKER_URL": "filesystem://", **env})
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=full_env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    status, body = result.stdout.splitlines()[-2:]
    return int(status), json.loads(body), body


def test_it_answers_503_naming_an_unreachable_database(tmp_path):
    status, body, raw = _healthz_in_subprocess(
        tmp_path, migrate=False, DATABASE_URL=f"postgres://portal:db-password@127.0.0.1:{free_port()}/portal")
    assert status == 503
    assert body["failing"] == ["database"]
    assert body["database"] == {"ok": False, "error": "OperationalError"}
    assert body["broker"]["ok"] is True
    assert "db-password" not in raw


def test_it_answers_503_for_a_broker_that_is_down_in_a_fresh_process(tmp_path):
    status, body, raw = _healthz_in_subprocess(
        tmp_path, CELERY_BROKER_URL=f"amqp://guest:amqp-password@127.0.0.1:{free_port()}//")
    assert status == 503
    assert body["failing"] == ["broker"]
    assert body["broker"]["transport"] == "amqp"
    assert "amqp-password" not in raw


def test_it_answers_503_not_500_before_the_database_is_migrated(tmp_path):
    status, body, _ = _healthz_in_subprocess(tmp_path, migrate=False)
    assert status == 503
    assert body["failing"] == ["database"]
    assert body["database"] == {"ok": False, "error": "OperationalError"}
