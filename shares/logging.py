"""A logging filter that keeps portal-link tokens out of log lines.

The path of a portal link is the token (/s/<token>), and Django logs paths:
"Not Found: /s/…" (django.request), the runserver access line
(django.server), "Forbidden (CSRF …): /s/…" (django.security.csrf). The
filter rewrites every /s/<segment> in the message and its arguments to
/s/[redacted] before any handler formats the record.
"""
from __future__ import annotations

import logging
import re

# Anything after /s/ up to the next slash, space, quote, query or fragment.
# Deliberately broad (a path like /browse/b/s/x is redacted too): a log line
# that says too little is harmless; one that carries a working link is not.
_LINK_PATH = re.compile(r"/s/[^/\s\"'?#]+")
REDACTED_PATH = "/s/[redacted]"


def redact(text: str) -> str:
    return _LINK_PATH.sub(REDACTED_PATH, text) if "/s/" in text else text


def _clean(value):
    return redact(value) if isinstance(value, str) else value


class RedactLinkTokens(logging.Filter):
    """Attach to the loggers (and the handler) that may see a request path."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_clean(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {name: _clean(arg) for name, arg in record.args.items()}
        return True
