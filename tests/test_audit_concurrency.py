"""50 concurrent share creations on PostgreSQL: 50 shares, 50 creation events, a
chain that verifies. Runs in a database of its own, in a subprocess with real
connections (one per thread), on both CI passes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import CI

ROOT = Path(__file__).resolve().parent.parent


def _pg_server() -> dict:
    """Where to create the scratch database: the suite's own PostgreSQL server
    if it runs on one, else the local server (127.0.0.1:5432, user postgres)."""
    from django.db import connection

    if connection.vendor == "postgresql":
        s = connection.settings_dict
        return {"host": s["HOST"] or "127.0.0.1", "port": s["PORT"] or 5432, "user": s["USER"],
                "password": s["PASSWORD"] or None}
    return {"host": "127.0.0.1", "port": 5432, "user": "postgres", "password": None}


@pytest.mark.services
@pytest.mark.slow
@pytest.mark.django_db
def test_fifty_concurrent_shares_leave_fifty_events_and_a_chain_that_verifies(s3_bucket, s3_client):
    import psycopg

    server = _pg_server()
    name = f"audit_race_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(dbname="postgres", autocommit=True, connect_timeout=3, **server)
    except psycopg.OperationalError as exc:
        message = f"PostgreSQL is not reachable at {server['host']}:{server['port']}: {exc}"
        if CI:
            pytest.fail(message)
        pytest.skip("POSTGRESQL CONCURRENCY TEST SKIPPED: " + message)
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        for i in range(50):
            s3_client.put_object(Bucket=s3_bucket.name, Key=f"race/{i}.txt", Body=b"x")
        auth = server["user"] + (f":{server['password']}" if server["password"] else "")
        env = dict(os.environ, DATABASE_URL=f"postgres://{auth}@{server['host']}:{server['port']}/{name}")
        env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        migrate = subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env,
                                 capture_output=True, text=True, timeout=300)
        assert migrate.returncode == 0, migrate.stderr
        race = subprocess.run(
            [sys.executable, "-m", "tests.audit_race", s3_bucket.name, s3_bucket.endpoint_url, s3_bucket.region, "50"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert race.returncode == 0, race.stderr
        outcome = json.loads(race.stdout.strip().splitlines()[-1])
        assert outcome["errors"] == []
        assert (outcome["shares"], outcome["events"], outcome["distinct_event_shares"]) == (50, 50, 50)
        assert outcome["verify_ok"] and outcome["sealed_events"] >= 50, outcome
    finally:
        with psycopg.connect(dbname="postgres", autocommit=True, **server) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
