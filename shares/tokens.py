"""Personal API tokens: shown once, stored as a SHA-256 digest only.

A token is a bearer credential: it never goes into the audit log or logs; the
audit event names the token's id, name and display prefix.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from django.db import transaction
from django.http import Http404, HttpRequest
from django.utils import timezone

from . import audit
from .models import ApiToken

TOKEN_PREFIX = "s3p_"  # recognisable in a leaked-secret scanner and on screen
NAME_MAX = 100
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)


class TokenError(Exception):
    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def digest_of(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode("utf-8", "surrogatepass")).hexdigest()


def create_api_token(user, name: str, *, request: HttpRequest | None = None) -> tuple[ApiToken, str]:
    """A new token for `user`. Returns (row, plaintext); the plaintext is never stored."""
    name = (name or "").strip()
    if not name:
        raise TokenError("Give the token a name, so you can tell it apart later.", field="name")
    if len(name) > NAME_MAX:
        raise TokenError(f"The name must be at most {NAME_MAX} characters.", field="name")
    plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        token = ApiToken.objects.create(user=user, name=name, digest=digest_of(plaintext),
                                        prefix=plaintext[: len(TOKEN_PREFIX) + 6])
        audit.record(audit.TOKEN_CREATED, actor=user, request=request,
                     details={"token_id": token.pk, "name": name, "prefix": token.prefix})
    return token, plaintext


def delete_api_token(user, token_id, *, request: HttpRequest | None = None) -> None:
    """Delete one of the user's own tokens; 404 for anyone else's or unknown ids."""
    try:
        pk = int(str(token_id))
    except ValueError:
        raise Http404("No such token") from None
    with transaction.atomic():
        token = ApiToken.objects.select_for_update().filter(user=user, pk=pk).first()
        if token is None:
            raise Http404("No such token")
        audit.record(audit.TOKEN_DELETED, actor=user, request=request,
                     details={"token_id": token.pk, "name": token.name, "prefix": token.prefix})
        token.delete()


def tokens_for_user(user):
    return ApiToken.objects.filter(user=user)


def bearer_digest(header: str | None) -> str | None:
    """The stored digest of the token in an `Authorization: Bearer <token>`
    header, or None if the header cannot hold one of ours."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value.startswith(TOKEN_PREFIX) or len(value) > 200:
        return None
    return digest_of(value)


def note_use(token_id: int, now: dt.datetime) -> None:
    """Set the token's last_used_at. Callers do it at most once a
    LAST_USED_RESOLUTION per token: a busy script must not turn every API call
    into a row update."""
    ApiToken.objects.filter(pk=token_id).update(last_used_at=now)


def authenticate_bearer(header: str | None):
    """The active user an `Authorization: Bearer <token>` header names, or None."""
    digest = bearer_digest(header)
    if digest is None:
        return None
    token = ApiToken.objects.select_related("user").filter(digest=digest).first()
    if token is None or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        note_use(token.pk, now)
        token.last_used_at = now
    return token.user
