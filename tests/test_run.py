"""`make run` (scripts/run.py) end to end: a real nanio, Celery worker and beat,
and gunicorn, in a temporary data folder on a free port."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from shares import demo
from shares.local_s3 import free_port

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "scripts" / "run.py"


def _run_env(data_dir: Path, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "PYTEST_", "DJANGO_ALLOW_ASYNC")) and k not in ("PORTAL_DEMO_PASSWORD",)}
    # The embedded defaults, whatever the surrounding test pass uses.
    for name in ("DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "CACHE_URL"):
        env.pop(name, None)
    env.update({"PORT": str(port), "PORTAL_DATA_DIR": str(data_dir), **extra})
    return env


def _group_members(pgids: set[int]) -> list[int]:
    """Live (non-zombie) processes in any of these process groups."""
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        state, pgid = fields[0], int(fields[2])
        if pgid in pgids and state != "Z":
            alive.append(int(entry.name))
    return alive


def _stop(process: subprocess.Popen, sig: int) -> int:
    """Send `sig` as Ctrl-C or a service manager would; kill the group if it hangs."""
    if process.poll() is None:
        process.send_signal(sig)
    try:
        return process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise


def _wait_for(pattern: str, path: Path, process: subprocess.Popen, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text(errors="replace")
        if re.search(pattern, text):
            return text
        if process.poll() is not None:
            pytest.fail(f"run.py exited with {process.returncode}:\n{text}")
        time.sleep(0.2)
    pytest.fail(f"run.py printed no {pattern!r} within {timeout} s:\n{path.read_text(errors='replace')}")


@pytest.mark.slow
def test_it_serves_the_demo_and_stops_every_child_on_ctrl_c(tmp_path):
    port = free_port()
    output = tmp_path / "run.out"
    with open(output, "wb") as out:
        process = subprocess.Popen([sys.executable, str(RUN)], cwd=ROOT, env=_run_env(tmp_path / "data", port),
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        text = _wait_for(r"Logs: ", output, process, timeout=180)
        children = {name: int(pid) for name, pid in re.findall(r"started (\w+) \(pid (\d+)\)", text)}
        assert set(children) == {"nanio", "worker", "beat", "server"}
        assert f"http://127.0.0.1:{port}/accounts/login/" in text
        password = re.search(r"sign in as:\s+admin\s+password: (\S+)", text).group(1)
        endpoint = re.search(r"Local S3 endpoint: (http://127\.0\.0\.1:\d+)", text).group(1)
        assert "access key: portal-dev" in text and "aws --endpoint-url" in text

        # Sign in over HTTP through the real form, as a person would.
        session = requests.Session()
        base = f"http://127.0.0.1:{port}"
        login = session.get(f"{base}/accounts/login/", timeout=10)
        assert login.status_code == 200
        home = session.post(f"{base}/accounts/login/", timeout=10, headers={"Referer": f"{base}/accounts/login/"},
                            data={"login": "admin", "password": password,
                                  "csrfmiddlewaretoken": session.cookies["csrftoken"]})
        assert home.status_code == 200 and home.url == f"{base}/"
        assert "portal-demo" in home.text

        health = requests.get(f"{base}/healthz", timeout=10).json()
        assert health["status"] == "ok" and health["buckets"] == {"portal-demo": {"ok": True}}

        # The seeded bucket is really on the printed endpoint, with its 1,500+ folder.
        from shares.local_s3 import LocalS3

        s3 = LocalS3(tmp_path, port=int(endpoint.rsplit(":", 1)[1])).client()
        page = s3.list_objects_v2(Bucket="portal-demo", Prefix=demo.MANY_FOLDER, MaxKeys=1000)
        assert page["KeyCount"] == 1000 and page["IsTruncated"]
        assert s3.get_object(Bucket="portal-demo", Key="images/logo.png")["Body"].read().startswith(b"\x89PNG")
    finally:
        returncode = _stop(process, signal.SIGINT)
    assert returncode == 0
    assert "== stopping" in output.read_text()
    assert _group_members(set(children.values())) == []


@pytest.mark.slow
def test_without_the_demo_it_starts_no_local_s3_and_stops_on_sigterm(tmp_path):
    port = free_port()
    output = tmp_path / "run.out"
    with open(output, "wb") as out:
        process = subprocess.Popen([sys.executable, str(RUN)], cwd=ROOT,
                                   env=_run_env(tmp_path / "data", port, PORTAL_DEMO="0",
                                                PORTAL_DEMO_PASSWORD="a-chosen-password-123"),
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        text = _wait_for(r"Logs: ", output, process, timeout=180)
        children = {name: int(pid) for name, pid in re.findall(r"started (\w+) \(pid (\d+)\)", text)}
        assert set(children) == {"worker", "beat", "server"}
        assert "Local S3 endpoint" not in text and "nanio" not in text
        assert "sign in as:  admin   password: a-chosen-password-123" in text
        health = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10).json()
        assert health["status"] == "ok" and health["buckets"] == {}
    finally:
        returncode = _stop(process, signal.SIGTERM)
    assert returncode == 0
    assert _group_members(set(children.values())) == []


def test_it_refuses_a_port_in_use_with_one_line(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run([sys.executable, str(RUN)], cwd=ROOT, env=_run_env(tmp_path, port),
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip() == (f"Port {port} on 127.0.0.1 is already in use; stop what runs there or "
                                     "choose another: PORT=8001 make run")
    assert "Traceback" not in result.stdout + result.stderr


def test_it_stops_with_one_line_on_bad_configuration(tmp_path):
    result = subprocess.run([sys.executable, str(RUN)], cwd=ROOT, env=_run_env(tmp_path, free_port(), PORT="80a"),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip() == "Configuration error: PORT='80a' is not a whole number"


def test_it_keeps_the_generated_demo_password_across_runs(tmp_path, monkeypatch):
    monkeypatch.delenv("PORTAL_DEMO_PASSWORD", raising=False)
    first = demo.demo_password(tmp_path)
    assert len(first) >= 16
    assert demo.demo_password(tmp_path) == first
    assert (tmp_path / "demo_admin_password").stat().st_mode & 0o077 == 0


def test_it_takes_the_demo_password_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PORTAL_DEMO_PASSWORD", "a-chosen-password-123")
    assert demo.demo_password(tmp_path) == "a-chosen-password-123"


def test_it_generates_a_valid_png_and_pdf():
    png = demo.png_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and png.endswith(b"IEND\xaeB`\x82")
    pdf = demo.pdf_bytes()
    assert pdf.startswith(b"%PDF-1.4") and pdf.rstrip().endswith(b"%%EOF")
    # startxref points at the xref table.
    offset = int(pdf.rsplit(b"startxref\n", 1)[1].split(b"\n", 1)[0])
    assert pdf[offset:offset + 4] == b"xref"


def test_it_seeds_names_with_spaces_and_non_ascii_and_a_big_folder():
    keys = [key for key, _, _ in demo.demo_objects()]
    assert any(" " in key for key in keys)
    assert any(not key.isascii() for key in keys)
    assert sum(key.startswith(demo.MANY_FOLDER) for key in keys) >= 1500
    assert len(keys) == len(set(keys))
