import os
import sys

from django.core.wsgi import get_wsgi_application

from portal.env import ConfigError

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

try:
    application = get_wsgi_application()
except ConfigError as exc:
    sys.stderr.write(f"Configuration error: {exc}\n")
    # 4 is gunicorn's "app failed to load": the master stops instead of
    # rebooting workers forever. gunicorn.conf.py usually catches it earlier.
    sys.exit(4)
