"""The test harness later issues reuse.

- `local_s3`: nanio (verifies SigV4 signatures and expiry) on a free port with a
  temporary data folder, one per test session/xdist worker.
- `s3_bucket`: a fresh bucket in it, registered in the portal.
- personas: admin, alice (full-bucket grant), bob (grant on "team-a/" only),
  charlie (no grant), plus Django test clients signed in as each and one that
  enforces CSRF.
- `celery_worker_process`: a real `celery worker` subprocess on the configured broker.
- Playwright launches Debian's chromium (see the browser fixtures below).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from shares import s3
from shares.local_s3 import LocalS3, stop_process_group
from shares.models import Bucket, Grant
from tests.audit_fixtures import audit_events_flushable_between_tests  # noqa: F401  (audit: lets flush clear the append-only table)

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct-horse-battery-staple-42"
CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# Playwright's sync API runs an event loop in the test thread; Django's ORM
# would refuse to run beside it.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


# --- local S3 -----------------------------------------------------------------

@pytest.fixture(scope="session")
def local_s3(tmp_path_factory):
    server = LocalS3(tmp_path_factory.mktemp("nanio")).start()
    previous = {name: os.environ.get(name) for name in server.aws_env()}
    os.environ.update(server.aws_env())
    # Never pick up a developer's own ~/.aws profile or config in tests.
    os.environ.pop("AWS_PROFILE", None)
    os.environ.pop("AWS_SESSION_TOKEN", None)
    s3.clear_clients()
    yield server
    server.stop()
    for name, value in previous.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    s3.clear_clients()


@pytest.fixture
def s3_client(local_s3):
    return local_s3.client()


@pytest.fixture
def s3_bucket(db, local_s3, s3_client) -> Bucket:
    """A fresh, empty bucket on nanio, registered in the portal."""
    name = f"t-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    return Bucket.objects.create(name=name, label="Test bucket", region=local_s3.region,
                                 endpoint_url=local_s3.endpoint_url)


@pytest.fixture
def put_object(s3_client, s3_bucket):
    """put_object(key, body=None) -> the bytes stored at `key` in s3_bucket."""

    def put(key: str, body: bytes | None = None) -> bytes:
        body = body if body is not None else f"contents of {key}".encode()
        s3_client.put_object(Bucket=s3_bucket.name, Key=key, Body=body)
        return body

    return put


# --- personas -------------------------------------------------------------------

def _user(username: str, **extra) -> User:
    return User.objects.create_user(username, f"{username}@example.com", PASSWORD, **extra)


@pytest.fixture
def admin_user(db) -> User:
    return User.objects.create_superuser("admin", "admin@example.com", PASSWORD)


@pytest.fixture
def alice(db) -> User:
    """Staff with a full grant (through the "Team" group) on s3_bucket, when used."""
    user = _user("alice")
    user.groups.add(Group.objects.get_or_create(name="Team")[0])
    return user


@pytest.fixture
def bob(db) -> User:
    """Staff with a narrow grant: "team-a/" only."""
    return _user("bob")


@pytest.fixture
def charlie(db) -> User:
    """An outsider: signed in, no grant at all."""
    return _user("charlie")


@pytest.fixture
def grants(s3_bucket, alice, bob) -> dict[str, Grant]:
    team = Group.objects.get(name="Team")
    return {
        "alice": Grant.objects.create(bucket=s3_bucket, group=team, prefix="", can_share=True),
        "bob": Grant.objects.create(bucket=s3_bucket, user=bob, prefix="team-a/", can_share=True,
                                    max_expiry=86400),
    }


def _client_for(user: User, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


@pytest.fixture
def admin_client(admin_user) -> Client:
    return _client_for(admin_user)


@pytest.fixture
def alice_client(alice) -> Client:
    return _client_for(alice)


@pytest.fixture
def bob_client(bob) -> Client:
    return _client_for(bob)


@pytest.fixture
def charlie_client(charlie) -> Client:
    return _client_for(charlie)


@pytest.fixture
def csrf_client(alice) -> Client:
    """alice, with CSRF checks enforced as in a real browser."""
    return _client_for(alice, enforce_csrf_checks=True)


# --- Celery ---------------------------------------------------------------------

@pytest.fixture
def celery_worker_process():
    """Start a real `celery -A portal worker` with the test's environment.

    Call it with extra environment variables; returns the Popen. Stopped (and
    killed if need be) at teardown."""
    started: list[subprocess.Popen] = []

    def start(extra_env: dict[str, str] | None = None, *, queues: str = "celery", ready_timeout: float = 60.0,
              log_path: Path | None = None) -> subprocess.Popen:
        env = dict(os.environ, **(extra_env or {}))
        env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        log = open(log_path, "wb") if log_path else subprocess.DEVNULL
        command = [sys.executable, "-m", "celery", "-A", "portal", "worker", "--pool=solo", "--concurrency=1",
                   "--without-gossip", "--without-mingle", "--without-heartbeat", "-Q", queues,
                   "--loglevel=INFO", "-n", f"test-{uuid.uuid4().hex[:8]}@%h"]
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        started.append(process)
        return process

    yield start
    for process in started:
        stop_process_group(process)


# --- browser (Playwright driving Debian's chromium) -------------------------------

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    if not Path(CHROMIUM).exists():
        message = "Debian's chromium is not installed: apt-get install -y chromium (.ci/run does this)"
        if CI:
            pytest.fail(message)
        pytest.skip("BROWSER TESTS SKIPPED: " + message)
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic", "--disable-dev-shm-usage"],
    }


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "permissions": ["clipboard-read", "clipboard-write"], "accept_downloads": True}


@pytest.fixture
def sign_in(live_server):
    """Sign in through the real form: sign_in(page, "alice")."""

    def do(page, username: str, password: str = PASSWORD) -> None:
        page.goto(f"{live_server.url}/accounts/login/")
        page.get_by_label("Username or email").fill(username)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()

    return do
