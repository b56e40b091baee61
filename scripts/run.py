#!/usr/bin/env python
"""`make run`: the whole portal on embedded defaults, in one command.

Migrates, creates the cache table, collects static files, creates the demo admin,
starts a local S3 server (nanio) with the demo bucket `portal-demo`, a Celery
worker and beat, and serves the portal with gunicorn on http://127.0.0.1:$PORT.
Ctrl-C (or SIGTERM) stops every process it started.

Environment: PORT (8000), PORTAL_DATA_DIR (var/), PORTAL_DEMO (1; 0 = real
buckets only, no local S3), PORTAL_DEMO_PASSWORD, NANIO_PORT (a free port).
Every other variable is passed on to the portal (see .env.example).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.chdir(ROOT)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

from portal.env import ConfigError, env_bool, env_int, env_str  # noqa: E402

PYTHON = sys.executable
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Fatal(Exception):
    """Stop with this one-line message (exit code 1)."""


def say(message: str = "") -> None:
    print(message, flush=True)


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class Children:
    """The processes run.py started. Each runs in its own session (process
    group), so stopping it also stops its own children (prefork workers, gunicorn
    workers), and a Ctrl-C in the terminal reaches run.py alone, which then stops
    them in order."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.processes: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, command: list[str], env: dict[str, str], *, log: bool = True) -> subprocess.Popen:
        output = open(self.log_dir / f"{name}.log", "ab") if log else None
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT if log else None,
                                   start_new_session=True)
        self.processes.append((name, process))
        say(f"  started {name} (pid {process.pid})")
        return process

    def adopt(self, name: str, process: subprocess.Popen) -> None:
        self.processes.append((name, process))
        say(f"  started {name} (pid {process.pid})")

    def first_dead(self) -> tuple[str, int] | None:
        for name, process in self.processes:
            if process.poll() is not None:
                return name, process.returncode
        return None

    def stop_all(self, grace: float = 10.0) -> None:
        # Newest first: the server stops taking requests before the worker and S3 go.
        # SIGTERM to each leader only: celery and gunicorn masters then shut their own
        # children down in order (a group-wide TERM makes the worker's pool die
        # mid-task and the master linger).
        for _, process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + grace
        for name, process in reversed(self.processes):
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                say(f"  {name} did not stop in {grace:.0f} s: killing it")
            # Whatever is left of the group (a stuck worker child, say) goes too.
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            process.wait()
        self.processes.clear()


def wait_for_http(url: str, process: subprocess.Popen, name: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise Fatal(f"{name} exited with code {process.returncode} while starting; see its log")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.2)
    raise Fatal(f"{name} did not answer at {url} within {timeout:.0f} s")


def prepare_database(data_dir: Path, demo: bool, local_s3) -> tuple[str, str | None]:
    """migrate, createcachetable, collectstatic, demo records. Returns (username,
    password or None when an existing admin keeps its own)."""
    import django
    from django.core.management import call_command

    django.setup()
    from shares import demo as demo_data

    say("== preparing the database and static files")
    call_command("migrate", interactive=False, verbosity=0)
    call_command("createcachetable", verbosity=0)
    call_command("collectstatic", interactive=False, verbosity=0)

    from django.contrib.auth.models import User

    password: str | None = demo_data.demo_password(data_dir)
    if demo:
        username, _ = demo_data.ensure_admin(password)
        demo_data.register_demo_bucket(local_s3.endpoint_url, local_s3.region, password)
    elif not User.objects.filter(is_superuser=True).exists():
        username, _ = demo_data.ensure_admin(password)
    else:
        # Real buckets: never reset the password of an existing admin.
        username, password = User.objects.filter(is_superuser=True).order_by("id")[0].username, None
    from django.db import connections

    connections.close_all()  # the children open their own; SQLite must not see a stale lock
    return username, password


def main() -> int:
    try:
        port = env_int("PORT", 8000, minimum=1, maximum=65535)
        demo = env_bool("PORTAL_DEMO", True)
        nanio_port = env_int("NANIO_PORT", 0, minimum=0, maximum=65535)
        data_dir = Path(env_str("PORTAL_DATA_DIR", str(ROOT / "var"))).resolve()
    except ConfigError as exc:
        raise Fatal(f"Configuration error: {exc}") from None

    # Checked first, so a busy port costs a second, not a migrate and an S3 seed.
    if not port_is_free(port):
        raise Fatal(f"Port {port} on 127.0.0.1 is already in use; stop what runs there or choose another: PORT=8001 make run")
    if nanio_port and not port_is_free(nanio_port):
        raise Fatal(f"NANIO_PORT {nanio_port} on 127.0.0.1 is already in use; choose another or leave it unset")

    data_dir.mkdir(parents=True, exist_ok=True)
    log_dir = data_dir / "logs"
    log_dir.mkdir(exist_ok=True)
    os.environ["PORTAL_DATA_DIR"] = str(data_dir)  # every child shares this one data folder
    children = Children(log_dir)

    stop_requested: list[int] = []

    def on_signal(signum, _frame) -> None:
        stop_requested.append(signum)

    for signum in STOP_SIGNALS:
        signal.signal(signum, on_signal)

    try:
        local_s3 = None
        if demo:
            from shares import demo as demo_data
            from shares.local_s3 import LocalS3

            say("== starting the local S3 server (nanio)")
            local_s3 = LocalS3(data_dir / "s3", port=nanio_port or None)
            try:
                local_s3.start(log_file=open(log_dir / "nanio.log", "ab"))
            except (RuntimeError, OSError) as exc:
                raise Fatal(f"The local S3 server did not start: {exc}; see {log_dir / 'nanio.log'}") from None
            children.adopt("nanio", local_s3.process)
            # The portal reads the standard AWS chain; for the demo that chain is nanio's keys.
            os.environ.update(local_s3.aws_env())
            os.environ.pop("AWS_PROFILE", None)
            os.environ.pop("AWS_SESSION_TOKEN", None)
            client = local_s3.client()
            marker = data_dir / demo_data.SEED_MARKER
            if not (marker.exists() and demo_data.bucket_exists(client, demo_data.DEMO_BUCKET)):
                started = time.monotonic()
                count = demo_data.seed_bucket(client, demo_data.DEMO_BUCKET)
                marker.write_text("seeded\n", encoding="utf-8")
                say(f"  seeded s3://{demo_data.DEMO_BUCKET} with {count} objects in {time.monotonic() - started:.1f} s")

        try:
            username, password = prepare_database(data_dir, demo, local_s3)
        except ConfigError:
            raise
        except Exception as exc:  # e.g. PostgreSQL down: one line, not a traceback
            from django.db import DatabaseError

            if not isinstance(exc, DatabaseError):
                raise
            raise Fatal(f"The database is not usable ({type(exc).__name__}): {str(exc).strip().splitlines()[0]}") from None
        if stop_requested:
            return 0

        say("== starting Celery (worker and beat) and the web server")
        env = dict(os.environ)
        (data_dir / "celerybeat.pid").unlink(missing_ok=True)  # a stale one from a killed run blocks beat
        children.start("worker", [PYTHON, "-m", "celery", "-A", "portal", "worker", "--loglevel=INFO",
                                  "--concurrency=2", "-n", f"portal-run-{port}@%h"], env)
        children.start("beat", [PYTHON, "-m", "celery", "-A", "portal", "beat", "--loglevel=INFO",
                                "--schedule", str(data_dir / "celerybeat-schedule"),
                                "--pidfile", str(data_dir / "celerybeat.pid")], env)
        server = children.start("server", [PYTHON, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"),
                                           "--bind", f"127.0.0.1:{port}", "--workers", "2", "--threads", "4",
                                           "--no-control-socket", "--access-logfile", "-",
                                           "--error-logfile", "-"], env)
        base = f"http://127.0.0.1:{port}"
        wait_for_http(f"{base}/accounts/login/", server, "the web server")

        say("")
        say("=" * 72)
        say(f"S3 Share Portal is running: {base}/accounts/login/")
        if password:
            say(f"  sign in as:  {username}   password: {password}")
            if demo:
                say(f"  (a staff user without admin rights: staff   password: {password})")
        else:
            say(f"  sign in as an existing admin ({username}) with its own password")
        if local_s3:
            say(f"Local S3 endpoint: {local_s3.endpoint_url}  (bucket: portal-demo, region {local_s3.region})")
            say(f"  access key: {local_s3.access_key}   secret key: {local_s3.secret_key}")
            say("  add a file:  AWS_ACCESS_KEY_ID={} AWS_SECRET_ACCESS_KEY={} AWS_DEFAULT_REGION={} \\".format(
                local_s3.access_key, local_s3.secret_key, local_s3.region))
            say(f"    aws --endpoint-url {local_s3.endpoint_url} s3 cp ./myfile.txt s3://portal-demo/uploads/myfile.txt")
        say(f"Logs: {log_dir}   Stop: Ctrl-C")
        say("=" * 72)

        while not stop_requested:
            dead = children.first_dead()
            if dead:
                raise Fatal(f"{dead[0]} exited unexpectedly (code {dead[1]}); see {log_dir / (dead[0] + '.log')}")
            time.sleep(0.5)
        say("== stopping")
        return 0
    finally:
        # Ignore further Ctrl-C while stopping, so that children are never orphaned.
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
        children.stop_all()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Fatal as exc:
        sys.stderr.write(f"{exc}\n")
        sys.exit(1)
    except ConfigError as exc:
        sys.stderr.write(f"Configuration error: {exc}\n")
        sys.exit(2)
