"""gunicorn reads this file from the working directory (or -c gunicorn.conf.py).

It checks the settings in the master process before any worker boots, so a bad
environment variable stops gunicorn with one line instead of a restart loop of
failing workers. Every other gunicorn option may still come from the command
line or GUNICORN_CMD_ARGS."""
import importlib
import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from portal.env import ConfigError  # noqa: E402

try:
    importlib.import_module(os.environ["DJANGO_SETTINGS_MODULE"])
except ConfigError as exc:
    sys.stderr.write(f"Configuration error: {exc}\n")
    sys.exit(2)

wsgi_app = "portal.wsgi:application"
