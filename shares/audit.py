"""Writing audit events. Call record() inside the transaction of the change it
records, so that the change and its event commit (or roll back) together.

Never pass a signed URL, a token, a signature or a secret in `details`."""
from __future__ import annotations

import contextvars
import functools
import ipaddress
import re
from typing import Any

from django.http import HttpRequest

from . import fastsql
from .models import AuditEvent, Share

USER_AGENT_MAX = 256

# Action names. Keep to these so that filters and the timeline of a share work.
SHARE_CREATED = "share.created"        # details: kind, expires_in, requested_expires_at, expires_at
SHARE_REVOKED = "share.revoked"        # details: bulk (bool)
LINK_VISITED = "link.visited"          # details: outcome = redirected|expired|revoked|used_up|rate_limited
ACCESS_DENIED = "access.denied"        # details: what (browse|object|share|api), reason
LOGIN = "auth.login"
LOGIN_FAILED = "auth.login_failed"     # actor_name = the login that was tried; never the password
ADMIN_CHANGE = "admin.change"          # details: model, object_id, change = created|changed|deleted
TOKEN_CREATED = "token.created"
TOKEN_DELETED = "token.deleted"
AUDIT_PURGED = "audit.purged"          # details: count, cutoff


# Details never carry secrets: keys that name one are dropped, and a value that
# looks like a signed URL or credential is replaced, whatever the caller passed.
_SECRET_KEY_RE = re.compile(
    r"^(.*[_-])?(url|token|signature|secret|password|authorization|cookie|access_key|secret_key)$", re.I
)
_SECRET_VALUE_RE = re.compile(r"(X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|Signature=|AWSAccessKeyId)", re.I)
REDACTED = "[redacted]"


def sanitise_details(details: dict[str, Any] | None) -> dict[str, Any]:
    """A JSON-safe copy of `details` with anything secret-looking removed."""

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                str(k): clean(v) for k, v in value.items() if not _SECRET_KEY_RE.search(str(k))
            }
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        if isinstance(value, str):
            return REDACTED if _SECRET_VALUE_RE.search(value) else value[:1000]
        if value is None or isinstance(value, (bool, int, float)):
            return value
        return str(value)[:1000]  # datetimes, Decimals, UUIDs: stored as text

    return clean(dict(details or {}))


@functools.lru_cache(maxsize=4096)  # the same few clients and proxies, over and over
def _ip(value: str) -> str | None:
    """The IP address in `value`, normalised, or None. Proxies write the client as
    "203.0.113.7", "203.0.113.7:51234", "[2001:db8::1]:443" or an IPv6 address
    with a zone ("fe80::1%eth0"); anything else ("unknown", a name, junk) is not
    an address, and must not reach the audit log's inet column (a 500 on
    PostgreSQL)."""
    value = value.strip()
    if value.startswith("[") and "]" in value:
        value = value[1:value.index("]")]
    elif value.count(":") == 1:
        value = value.split(":", 1)[0]  # IPv4 with a port
    value = value.split("%", 1)[0]
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def client_ip(request: HttpRequest | None) -> str | None:
    """The client's IP address (the last X-Forwarded-For hop, written by the
    trusted proxy, when TRUST_X_FORWARDED_FOR), or None if there is none."""
    if request is None:
        return None
    from django.conf import settings

    if settings.TRUST_X_FORWARDED_FOR:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded:
            return _ip(forwarded.split(",")[-1])
    return _ip(request.META.get("REMOTE_ADDR") or "")


def record(action: str, **kwargs: Any) -> AuditEvent:
    """Write one audit event (see event() for the arguments)."""
    event_ = event(action, **kwargs)
    # One precompiled INSERT (every share and every link visit writes an event).
    fastsql.insert(event_)
    return event_


def event(
    action: str,
    *,
    actor=None,
    actor_name: str | None = None,
    request: HttpRequest | None = None,
    bucket: str = "",
    key: str = "",
    share: Share | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """The unsaved event record() would write, for callers that write it together
    with their own change in one statement (fastsql, PostgreSQL)."""
    if actor is not None and not getattr(actor, "is_authenticated", False):
        actor = None
    if actor_name is None:
        actor_name = actor.get_username() if actor is not None else ""
    user_agent = ""
    if request is not None:
        user_agent = request.META.get("HTTP_USER_AGENT", "")[:USER_AGENT_MAX]
    return AuditEvent(
        actor=actor,
        actor_name=actor_name[:150],
        action=action,
        bucket=bucket[:63],
        key=key,
        share=share,
        ip=client_ip(request),
        user_agent=user_agent,
        details=sanitise_details(details),
    )


# --- the request being served, for signal handlers (admin changes) ------------------

_current_request: contextvars.ContextVar[HttpRequest | None] = contextvars.ContextVar("audit_request", default=None)


def current_request() -> HttpRequest | None:
    return _current_request.get()


class AuditContextMiddleware:
    """Remember the request while it is served, so that post_save/post_delete
    handlers (which get no request) can name the admin who made a change."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest):
        token = _current_request.set(request)
        try:
            return self.get_response(request)
        finally:
            _current_request.reset(token)
