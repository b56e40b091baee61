"""A task goes through a real broker to a real `celery worker` process and its
result comes back: on the filesystem broker (embedded default), on Redis and on
RabbitMQ. Each test uses its own queue so that parallel workers never take each
other's messages."""
from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import pytest
from celery import Celery
from django.conf import settings

from portal.celery import app as portal_app
from tests.conftest import CI

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/2")
AMQP_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _need(service: str, host: str, port: int, *, required_in_ci: bool = True) -> None:
    if _reachable(host, port):
        return
    message = f"{service} is not reachable at {host}:{port}"
    if CI and required_in_ci:
        pytest.fail(message + " (CI must run this test)")
    pytest.skip(f"{service.upper()} TESTS SKIPPED: {message}")


@pytest.fixture
def own_app_config(monkeypatch):
    """Celery lets CELERY_BROKER_URL / CELERY_RESULT_BACKEND in the environment win
    over an app's own configuration: drop them (CI's Redis pass sets them) so the
    app built in a test talks to the broker the test chose."""
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    monkeypatch.delenv("CELERY_RESULT_BACKEND", raising=False)


def _round_trip(app: Celery, start_worker, extra_env: dict[str, str], log_path: Path) -> None:
    queue = f"test-{uuid.uuid4().hex[:10]}"
    start_worker(extra_env, queues=queue, log_path=log_path)
    token = uuid.uuid4().hex
    # The worker needs a few seconds to boot; the message waits in the queue.
    result = app.send_task("portal.ping", args=[token], queue=queue)
    try:
        assert result.get(timeout=90) == token
    except Exception:
        print(log_path.read_text(errors="replace"))
        raise


@pytest.mark.slow
def test_it_runs_a_task_on_a_real_worker_through_the_configured_broker(celery_worker_process, tmp_path):
    """Whatever this pass configures: the filesystem broker by default, Redis in CI's second pass."""
    _round_trip(portal_app, celery_worker_process, {}, tmp_path / "worker.log")


@pytest.mark.slow
def test_it_runs_a_task_through_the_filesystem_broker(celery_worker_process, tmp_path, own_app_config):
    """The embedded default, even in CI's Redis pass: no broker server at all."""
    data = tmp_path / "data"
    # settings.py puts the queue in PORTAL_DATA_DIR/celery/queue; the worker gets
    # this PORTAL_DATA_DIR, the sending app the same folders.
    queue_dir, results = data / "celery" / "queue", data / "celery" / "results"
    for path in (queue_dir, results):
        path.mkdir(parents=True)
    app = Celery("portal-test", broker="filesystem://", backend=f"file://{results}")
    app.conf.broker_transport_options = {"data_folder_in": str(queue_dir), "data_folder_out": str(queue_dir),
                                         "processed_folder": str(tmp_path), "store_processed": False}
    env = {"CELERY_BROKER_URL": "filesystem://", "CELERY_RESULT_BACKEND": f"file://{results}",
           "PORTAL_DATA_DIR": str(data)}
    _round_trip(app, celery_worker_process, env, tmp_path / "worker.log")


@pytest.mark.services
@pytest.mark.slow
def test_it_runs_a_task_through_redis(celery_worker_process, tmp_path, own_app_config):
    _need("Redis", "127.0.0.1", 6379)
    app = Celery("portal-test", broker=REDIS_URL, backend=REDIS_URL)
    _round_trip(app, celery_worker_process,
                {"CELERY_BROKER_URL": REDIS_URL, "CELERY_RESULT_BACKEND": REDIS_URL}, tmp_path / "worker.log")


@pytest.mark.services
@pytest.mark.slow
def test_it_runs_a_task_through_rabbitmq(celery_worker_process, tmp_path, own_app_config):
    # RabbitMQ is an optional production broker: CI machines have it, a laptop may not.
    _need("RabbitMQ", "127.0.0.1", 5672, required_in_ci=False)
    app = Celery("portal-test", broker=AMQP_URL, backend="rpc://")
    _round_trip(app, celery_worker_process, {"CELERY_BROKER_URL": AMQP_URL, "CELERY_RESULT_BACKEND": "rpc://"},
                tmp_path / "worker.log")


def test_every_beat_entry_names_a_registered_task():
    portal_app.loader.import_default_modules()
    missing = [entry["task"] for entry in portal_app.conf.beat_schedule.values()
               if entry["task"] not in portal_app.tasks]
    assert missing == []


def test_tasks_survive_a_lost_worker_by_default():
    assert settings.CELERY_TASK_ACKS_LATE and settings.CELERY_TASK_REJECT_ON_WORKER_LOST
    # A Redis message is redelivered after visibility_timeout: a task must be killed well before.
    assert settings.CELERY_TASK_TIME_LIMIT < 3600
