"""Configuration from the environment: bad values stop start-up with one line
naming the variable (manage.py, gunicorn, celery), production refuses to run
without a SECRET_KEY, and `check --deploy` is clean with production settings."""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from portal.env import ConfigError, env_bool, env_choice, env_int, env_list, env_str

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DJANGO_ALLOW_ASYNC"))}
    for name in ("DATABASE_URL", "CELERY_BROKER_URL", "SECRET_KEY", "DEBUG", "PORTAL_ENV", "ALLOWED_HOSTS"):
        env.pop(name, None)
    env.update({"PORTAL_DATA_DIR": str(tmp_path), **extra})
    return env


def _run(command: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def _manage(tmp_path: Path, *args: str, **extra: str) -> subprocess.CompletedProcess:
    return _run([sys.executable, "manage.py", *args], _env(tmp_path, **extra))


def _assert_one_line(result: subprocess.CompletedProcess, expected: str) -> None:
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.splitlines() == [f"Configuration error: {expected}"]


def test_it_rejects_debug_maybe_with_one_line(tmp_path):
    result = _manage(tmp_path, "check", DEBUG="maybe")
    _assert_one_line(result, "DEBUG='maybe' is not a boolean; use true/false, yes/no, on/off or 1/0")


@pytest.mark.parametrize("url", ["not a url", "postgres://user:pw@host:notaport/db", "postgres://", "mysql://u@h/db"])
def test_it_rejects_a_malformed_database_url_with_one_line(tmp_path, url):
    result = _manage(tmp_path, "check", DATABASE_URL=url)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Configuration error: DATABASE_URL ")


def test_it_never_echoes_a_database_password_in_the_error(tmp_path):
    result = _manage(tmp_path, "check", DATABASE_URL="postgres://user:hunter2-secret@host:notaport/db")
    assert "hunter2" not in result.stderr


def test_production_refuses_to_start_without_a_secret_key(tmp_path):
    result = _manage(tmp_path, "check", PORTAL_ENV="production", ALLOWED_HOSTS="portal.example.com")
    _assert_one_line(result, "SECRET_KEY must be set when PORTAL_ENV=production")


def test_it_rejects_a_short_secret_key(tmp_path):
    result = _manage(tmp_path, "check", SECRET_KEY="short")
    _assert_one_line(result, "SECRET_KEY must be at least 50 characters long")


def test_development_generates_a_secret_key_once_and_keeps_it(tmp_path):
    code = "from django.conf import settings; print(settings.SECRET_KEY)"
    first = _manage(tmp_path, "shell", "-c", code)
    second = _manage(tmp_path, "shell", "-c", code)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout and len(first.stdout.strip()) >= 50
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_check_deploy_is_clean_with_production_settings(tmp_path):
    result = _manage(tmp_path, "check", "--deploy", "--fail-level", "WARNING", PORTAL_ENV="production",
                     SECRET_KEY=secrets.token_urlsafe(64), ALLOWED_HOSTS="portal.example.com", DEBUG="false")
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout
    assert "WARNINGS" not in result.stderr


def test_gunicorn_stops_with_one_line_on_bad_configuration(tmp_path):
    from shares.local_s3 import free_port

    result = _run([str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{free_port()}", "--no-control-socket"],
                  _env(tmp_path, DEBUG="maybe"), timeout=30)
    _assert_one_line(result, "DEBUG='maybe' is not a boolean; use true/false, yes/no, on/off or 1/0")


def test_celery_stops_with_one_line_on_bad_configuration(tmp_path):
    result = _run([sys.executable, "-m", "celery", "-A", "portal", "worker"], _env(tmp_path, DEBUG="maybe"),
                  timeout=30)
    _assert_one_line(result, "DEBUG='maybe' is not a boolean; use true/false, yes/no, on/off or 1/0")


def test_it_rejects_an_unknown_broker(tmp_path):
    result = _manage(tmp_path, "check", CELERY_BROKER_URL="kafka://somewhere")
    _assert_one_line(result, "CELERY_BROKER_URL must start with filesystem://, redis://, rediss:// or amqp://")


def test_it_rejects_an_unknown_time_zone(tmp_path):
    result = _manage(tmp_path, "check", TIME_ZONE="Mars/Olympus")
    _assert_one_line(result, "TIME_ZONE='Mars/Olympus' is not a known time zone (e.g. UTC, Europe/Berlin)")


def test_signup_needs_a_domain(tmp_path):
    result = _manage(tmp_path, "check", SIGNUP_ENABLED="true")
    _assert_one_line(result, "SIGNUP_EMAIL_DOMAINS must list at least one domain when SIGNUP_ENABLED is on")


# --- the helpers themselves (in-process) -------------------------------------

def test_env_bool_reads_the_usual_spellings(monkeypatch):
    for value, expected in (("1", True), ("Yes", True), ("on", True), ("0", False), ("off", False), ("", False)):
        monkeypatch.setenv("FLAG", value)
        assert env_bool("FLAG", not expected) is expected


def test_env_int_checks_bounds(monkeypatch):
    monkeypatch.setenv("NUMBER", "0")
    with pytest.raises(ConfigError, match="NUMBER=0 is below the minimum of 1"):
        env_int("NUMBER", 5, minimum=1)
    monkeypatch.setenv("NUMBER", "12.5")
    with pytest.raises(ConfigError, match="NUMBER='12.5' is not a whole number"):
        env_int("NUMBER", 5)


def test_env_reads_secrets_from_a_file(monkeypatch, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("from-a-file\n")
    monkeypatch.setenv("SOME_SECRET_FILE", str(secret))
    assert env_str("SOME_SECRET") == "from-a-file"
    monkeypatch.setenv("SOME_SECRET_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="SOME_SECRET_FILE=.* cannot be read"):
        env_str("SOME_SECRET")


def test_env_list_and_choice(monkeypatch):
    monkeypatch.setenv("HOSTS", " a.example , b.example,, ")
    assert env_list("HOSTS", []) == ["a.example", "b.example"]
    monkeypatch.setenv("MODE", "staging")
    with pytest.raises(ConfigError, match="MODE='staging' must be one of: development, production"):
        env_choice("MODE", "development", ("development", "production"))


def test_env_example_lists_every_knob():
    """Every variable settings.py reads is documented in .env.example."""
    import re

    settings_text = (ROOT / "portal" / "settings.py").read_text()
    names = set(re.findall(r"env_(?:str|bool|int|list|choice)\(\s*\"([A-Z_0-9]+)\"", settings_text))
    example = (ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^#?\s*([A-Z_0-9]+)=", example, flags=re.M))
    assert names - documented == set()


@pytest.mark.parametrize("value, expected", [("", "2147483647"), ("false", "None")])
def test_prepared_statements_can_be_turned_off_for_old_connection_poolers(tmp_path, value, expected):
    extra = {"DATABASE_URL": "postgres://u@127.0.0.1:5432/db"}
    if value:
        extra["DB_PREPARED_STATEMENTS"] = value
    result = _manage(tmp_path, "shell", "-c",
                     "from django.conf import settings; print(settings.DATABASES['default']['OPTIONS']['prepare_threshold'])",
                     **extra)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == expected  # (Django 5.2's shell first says what it imported)
