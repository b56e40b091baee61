"""Writing audit events. Call record() inside the transaction of the change it
records, so that the change and its event commit (or roll back) together.

Never pass a signed URL, a token, a signature or a secret in `details`."""
from __future__ import annotations

from typing import Any

from django.http import HttpRequest

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


def client_ip(request: HttpRequest | None) -> str | None:
    if request is None:
        return None
    from django.conf import settings

    if settings.TRUST_X_FORWARDED_FOR:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded:
            return forwarded.split(",")[-1].strip() or None
    return request.META.get("REMOTE_ADDR") or None


def record(
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
    if actor is not None and not getattr(actor, "is_authenticated", False):
        actor = None
    if actor_name is None:
        actor_name = actor.get_username() if actor is not None else ""
    user_agent = ""
    if request is not None:
        user_agent = request.META.get("HTTP_USER_AGENT", "")[:USER_AGENT_MAX]
    return AuditEvent.objects.create(
        actor=actor,
        actor_name=actor_name[:150],
        action=action,
        bucket=bucket[:63],
        key=key,
        share=share,
        ip=client_ip(request),
        user_agent=user_agent,
        details=details or {},
    )
