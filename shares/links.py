"""/s/<token>: the portal link a recipient opens (no account needed).

Each visit checks the share (revoked? expired? used up?), writes an audit event
and answers 302 to a freshly signed S3 URL valid for seconds. Bytes flow from
S3, never through the portal.
"""
from __future__ import annotations

import logging
import re

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from . import audit, fastsql, ratelimit, s3, services
from .models import Share

log = logging.getLogger(__name__)

# Our tokens are 43 base64url characters; anything else cannot match, so it
# never reaches the database.
TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{20,100}")


def _no_store(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"
    # Django's request logger would print the path, and the path is the token.
    response._has_been_logged = True  # noqa: SLF001
    return response


def _rate_limited(ip: str | None) -> tuple[bool, bool]:
    """(over the limit?, first refusal in this window?): a fixed one-minute window
    per IP, one round trip to the counter (shares/ratelimit.py)."""
    count = ratelimit.hit(ip)
    if count is None:  # Redis unreachable (logged): fail open
        return False, False
    limit = settings.PORTAL_LINK_RATE_LIMIT
    return count > limit, count == limit + 1


def _gone(request: HttpRequest, share: Share, outcome: str) -> HttpResponse:
    return _no_store(render(request, "shares/link_gone.html",
                            {"outcome": outcome, "share": share}, status=410))


def _unknown(request: HttpRequest) -> HttpResponse:
    return _no_store(render(request, "shares/link_unknown.html", status=404))


def _outcome_of(share: Share, now) -> str | None:
    """Why the link no longer works ("revoked", "used_up", "expired"), or None
    while it is live: Share.current_status, so that the visitor's page, the
    audit event and My shares name the same reason for a link that is both
    used up and expired."""
    status = share.current_status(now)
    return None if status == Share.Status.ACTIVE else Share.Status(status).value


@login_not_required
@csrf_exempt  # never acts on a POST (405); CSRF's own refusal would log the path, i.e. the token
def unknown_link(request: HttpRequest) -> HttpResponse:
    """Any other path under /s/ (e.g. /s/<token>/x): the "unknown link" page."""
    return _unknown(request)


@login_not_required
@csrf_exempt  # a POST gets 405 without any state change; CSRF's refusal would log the path (the token)
def share_link(request: HttpRequest, token: str) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        # Not @require_safe: its log line would carry the path, and the path is the token.
        return _no_store(HttpResponseNotAllowed(["GET", "HEAD"]))
    ip = audit.client_ip(request)
    share = None
    if TOKEN_RE.fullmatch(token):
        # Share + bucket by the unique digest, as precompiled SQL (fastsql).
        share = fastsql.portal_share(services.token_digest(token))
    now = timezone.now()
    outcome = None
    location = ""
    if share is not None:
        outcome = _outcome_of(share, now)
        if outcome is None:
            if share.bucket is None or not share.bucket.enabled:
                # The bucket was removed from the registry: nothing can be signed for it.
                outcome = "revoked"
            else:
                # Signing is local (no network): done before the write transaction
                # so that the database lock is held as briefly as possible.
                try:
                    config = services.config_for_bucket(share.bucket)
                    location = s3.presign_get(config, share.key, expires_in=settings.PORTAL_LINK_REDIRECT_EXPIRY)
                except (s3.S3Error, services.ShareError) as exc:
                    log.warning("portal link: cannot sign share %s: %s", share.pk, exc.message)
                    return _no_store(render(request, "shares/link_unavailable.html", status=502))

    counted = False
    attempted = False  # the conditional UPDATE already ran (PostgreSQL one-statement path)
    over = first_refusal = False
    limit_in_transaction = ratelimit.counts_in_database()
    if not limit_in_transaction:
        # Redis: one round trip, nothing to join a transaction for.
        over, first_refusal = _rate_limited(ip)
        if (not over and share is not None and outcome is None and request.method == "GET"
                and fastsql.one_statement()):
            # PostgreSQL: the conditional download count and its audit event in one
            # atomic statement; the event is written only if the visit counted.
            event = audit.event(audit.LINK_VISITED, request=request, actor_name="anonymous",
                                bucket=share.bucket_name, key=share.key, share=share,
                                details={"outcome": "redirected"})
            attempted = True
            counted = fastsql.count_download_with_event(share.pk, now, event)
            if not counted:
                share.refresh_from_db()
                outcome = _outcome_of(share, now) or "used_up"

    if not counted:
        # One write transaction per visit: the rate-limit counter (when it counts in
        # the database it joins this transaction), the download count and the audit event.
        # (On SQLite, writers queue for the lock rather than sleep: fastsql.write_transaction.)
        with fastsql.write_transaction():
            if limit_in_transaction:
                over, first_refusal = _rate_limited(ip)
            if over:
                # One audit event per IP per window, not per refused request: a flood
                # must not be able to flood the audit log too.
                if first_refusal:
                    audit.record(audit.LINK_VISITED, request=request, actor_name="anonymous",
                                 bucket=share.bucket_name if share else "", key=share.key if share else "",
                                 share=share, details={"outcome": "rate_limited"})
            elif share is not None:
                if outcome is None and request.method == "GET" and not attempted:
                    # One conditional UPDATE (it also marks the share used up when this
                    # visit reaches the limit): two visitors racing for the last download
                    # of a limit cannot both win, on any database.
                    if fastsql.count_download(share.pk, now):
                        counted = True
                    else:
                        share.refresh_from_db()
                        outcome = _outcome_of(share, now) or "used_up"
                details = {"outcome": outcome or "redirected"}
                if request.method == "HEAD":
                    details["method"] = "HEAD"  # a HEAD never counts as a download
                audit.record(audit.LINK_VISITED, request=request, actor_name="anonymous", bucket=share.bucket_name,
                             key=share.key, share=share, details=details)

    if over:
        log.warning("portal link: rate limit reached for %s", ip)
        response = _no_store(render(request, "shares/link_rate_limited.html", status=429))
        response["Retry-After"] = "60"
        return response
    if share is None:
        return _unknown(request)
    if outcome is not None:
        return _gone(request, share, outcome)
    log.debug("portal link: share %s visited (%s)", share.pk, "counted" if counted else request.method)
    return _no_store(HttpResponseRedirect(location))
