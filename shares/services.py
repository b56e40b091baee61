"""Sharing: the one function that creates a share (used by the web page, the
API, the CLI and the admin), revocation, and the selectors that read shares.

share_create() validates, checks the grant, signs (direct links), and writes the
Share row and its audit event in one transaction. It never touches the Celery
broker: a share is answered from the database and local signing alone.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import logging
import os
import re
import secrets
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.http import Http404, HttpRequest
from django.urls import get_script_prefix, reverse
from django.utils import timezone

from . import audit, fastsql, grants, s3, tokens
from .models import Bucket, Share

log = logging.getLogger(__name__)

WEEK = 604800
NOTE_MAX = 500
MAX_DOWNLOADS_LIMIT = 1_000_000
# Longer than any sane expiry; keeps int() away from 5,000-digit strings.
_DIGITS = re.compile(r"[0-9]{1,12}")


class ShareError(Exception):
    """A share that cannot be made, worded for a person.

    status: 400 bad input, 403 no grant / may not share, 404 unknown bucket
    (or one the user may not see), 502/504 S3 trouble."""

    def __init__(self, message: str, *, field: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.status = status


@dataclass
class ShareResult:
    share: Share
    url: str  # the link to hand out: the absolute portal URL, or the direct presigned URL
    warning: str | None = None  # e.g. the real expiry is shorter than asked
    bearer: fastsql.BearerUse | None = None  # share_create_with_token: who the token named


# --- parsing ------------------------------------------------------------------

def _parse_whole_number(value, field: str, what: str) -> int:
    # bool is an int subclass: JSON `true` must not become 1 second.
    if isinstance(value, bool) or value is None:
        raise ShareError(f"{field} must be {what}.", field=field)
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        # ASCII digits only: rejects "1e3", "3600.5", "-1", "+5", "١٢" (Arabic-Indic digits int() accepts).
        if _DIGITS.fullmatch(text):
            return int(text)
    raise ShareError(f"{field} must be {what}.", field=field)


def parse_expires_in(value, *, field: str = "expires_in") -> int:
    """A positive whole number of seconds, from an int or a string of ASCII digits.
    The upper bound depends on the link kind and the grant: share_create checks it."""
    seconds = _parse_whole_number(value, field, "a whole number of seconds, such as 3600")
    if seconds < 1:
        raise ShareError(f"{field} must be a whole number of seconds, 1 or more.", field=field)
    return seconds


def parse_max_downloads(value, *, field: str = "max_downloads") -> int | None:
    """None or "" mean "no limit"; otherwise 1..1,000,000."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    what = f"a whole number from 1 to {MAX_DOWNLOADS_LIMIT:,}, or empty for no limit"
    number = _parse_whole_number(value, field, what)
    if not 1 <= number <= MAX_DOWNLOADS_LIMIT:
        raise ShareError(f"{field} must be {what}.", field=field)
    return number


# --- tokens -------------------------------------------------------------------

def token_for(share: Share) -> str:
    """The portal-link token: HMAC of the stored nonce under a key kept outside
    the database (256 bits, base64url). The creator can recompute it to copy the
    link again; a copy of the database alone cannot."""
    mac = hmac.new(settings.LINK_TOKEN_KEY.encode(), share.token_nonce.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


_LINK_ROUTE: str | None = None


def _link_path(token: str) -> str:
    """reverse("share_link", args=[token]) without walking the URLconf on every
    share: the route ("s/") is reversed once; the script prefix stays per request.
    Tokens are base64url, which reverse() would not quote anyway."""
    global _LINK_ROUTE
    script_prefix = get_script_prefix()
    if _LINK_ROUTE is None:
        _LINK_ROUTE = reverse("share_link", args=["T" * 43])[len(script_prefix):-43]
    return script_prefix + _LINK_ROUTE + token


def portal_url(share: Share, request: HttpRequest | None = None, *, token: str | None = None) -> str:
    """The absolute /s/<token> URL of a portal link (`token`: token_for(share),
    if the caller has it already)."""
    if share.kind != Share.Kind.PORTAL or not share.token_nonce:
        raise ValueError("Only portal links have a portal URL")
    path = _link_path(token or token_for(share))
    if settings.PORTAL_BASE_URL:
        return settings.PORTAL_BASE_URL + path
    if request is not None:
        return request.build_absolute_uri(path)
    return "http://127.0.0.1:8000" + path


# --- S3 configuration ----------------------------------------------------------

def config_for_bucket(bucket: Bucket) -> s3.BucketConfig:
    """The bucket's signing configuration. AWS buckets need their own region in
    the credential scope: learn it once (HeadBucket) and remember it."""
    if not bucket.region and not bucket.endpoint_url:
        try:
            region = s3.detect_region(s3.BucketConfig.from_bucket(bucket))
        except s3.S3Error as exc:
            raise ShareError(exc.message, status=exc.status if exc.status >= 500 else 502) from None
        Bucket.objects.filter(pk=bucket.pk, region="").update(region=region, region_learned=True)
        bucket.region, bucket.region_learned = region, True
    return s3.BucketConfig.from_bucket(bucket)


def _cli_config(bucket_name: str, bucket: Bucket | None, region: str | None, endpoint_url: str | None) -> s3.BucketConfig:
    """CLI signing: explicit flags first; then the registry entry if there is
    one; then the standard AWS environment. The registry region beats
    AWS_REGION because it is the bucket's own region (learned from S3), and a
    scope naming another region makes S3 refuse the link."""
    if bucket is not None:
        base = s3.BucketConfig.from_bucket(bucket)
    else:
        base = s3.BucketConfig(name=bucket_name)
    env_region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or ""
    env_endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or ""
    endpoint = endpoint_url or base.endpoint_url or env_endpoint
    public = base.public_endpoint_url if not endpoint_url else ""
    # A named profile in the environment wins over the registry's: the operator chose it.
    profile = "" if os.environ.get("AWS_PROFILE") else base.profile
    chosen_region = region or base.region or env_region
    config = s3.BucketConfig(name=bucket_name, region=chosen_region, endpoint_url=endpoint,
                             public_endpoint_url=public, addressing_style=base.addressing_style, profile=profile)
    if not chosen_region and not endpoint:
        try:
            detected = s3.detect_region(config)
        except s3.S3Error as exc:
            raise ShareError(exc.message, status=502) from None
        config = s3.BucketConfig(name=bucket_name, region=detected, endpoint_url=endpoint,
                                 public_endpoint_url=public, addressing_style=base.addressing_style, profile=profile)
    return config


# --- creating -------------------------------------------------------------------

def _deny(*, user, request, bucket_name: str, key: str, reason: str, message: str, status: int) -> ShareError:
    """Record the refusal (in its own transaction: the share itself is never
    written) and return the error to raise."""
    with transaction.atomic():
        audit.record(audit.ACCESS_DENIED, actor=user, request=request, bucket=bucket_name, key=key,
                     details={"what": "share", "reason": reason})
    return ShareError(message, status=status)


def _bucket_and_access(user, bucket_name: str, key: str) -> tuple[Bucket | None, grants.Access | None]:
    """The bucket (None for strangers: no grant at all, or no such bucket) and
    the best access covering `key`, in one query on the hot path.

    Same rules as grants.access_for (a test holds them equal); it needs the
    bucket first and a second query, which doubled the cost of creating a share."""
    if user.is_superuser:
        bucket = Bucket.objects.filter(name=bucket_name, enabled=True).first()
        return bucket, (grants.access_for(user, bucket, key) if bucket is not None else None)
    # Grants joined to the bucket, direct or through a group, as precompiled SQL
    # (fastsql): through the ORM, compiling this query cost more than running it.
    rows = fastsql.bucket_grants(user.pk, bucket_name)
    if not rows:
        return None, None
    bucket = rows[0][0]
    accesses = [grants.make_access(bucket, can_share=can_share, max_expiry=max_expiry, prefix=prefix)
                for _, can_share, max_expiry, prefix in rows]
    return bucket, grants.best_access(accesses, key)


# The registry's own rule (models.bucket_name_validator): nothing else can name a bucket.
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")


def _is_utf8(text: str) -> bool:
    """False for lone surrogates (JSON "\\ud800"), which no database column accepts."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _human_duration(seconds: int) -> str:
    if seconds % 86400 == 0:
        days = seconds // 86400
        return f"{days} day{'s' if days != 1 else ''}"
    if seconds % 3600 == 0:
        hours = seconds // 3600
        return f"{hours} hour{'s' if hours != 1 else ''}"
    return f"{seconds:,} seconds"


def _validated(*, bucket_name, key, expires_in, kind, max_downloads, note) -> tuple[str, str, int, str, int | None, str]:
    """share_create's arguments checked and normalised: (bucket_name, key,
    expires_in, kind, max_downloads, note), or ShareError naming the field."""
    if kind not in (Share.Kind.PORTAL, Share.Kind.DIRECT):
        raise ShareError('kind must be "portal" or "direct".', field="kind")
    if not isinstance(bucket_name, str) or not bucket_name:
        raise ShareError("bucket is required.", field="bucket")
    if not _BUCKET_NAME.fullmatch(bucket_name):
        raise ShareError("bucket must be an S3 bucket name: 3 to 63 lowercase letters, digits, dots and hyphens.",
                         field="bucket")
    if not isinstance(key, str) or not grants.key_is_valid(key) or not _is_utf8(key):
        raise ShareError("key must be an object key of 1 to 1024 bytes of UTF-8 text.", field="key")
    expires_in = parse_expires_in(expires_in)
    max_downloads = parse_max_downloads(max_downloads)
    if note is None:
        note = ""
    if not isinstance(note, str) or "\x00" in note or not _is_utf8(note):
        raise ShareError("note must be text.", field="note")
    note = note.strip()
    if len(note) > NOTE_MAX:
        raise ShareError(f"note must be at most {NOTE_MAX} characters.", field="note")
    if max_downloads is not None and kind == Share.Kind.DIRECT:
        raise ShareError("A download limit needs a portal link: direct links cannot be counted.",
                         field="max_downloads")
    return bucket_name, key, expires_in, kind, max_downloads, note


def _one_statement_config(bucket_name: str, kind: str, expires_in: int) -> tuple[s3.BucketConfig | None, tuple] | None:
    """(signing configuration, the registry's signing columns it came from) for
    a share that may take the one-statement path: a portal link, or a direct
    link from a bucket whose configuration the full path has learned (a portal
    link gives (None, ())); None: take the full path."""
    longest = WEEK if kind == Share.Kind.DIRECT else max(settings.PORTAL_LINK_MAX_EXPIRY, 1)
    if expires_in > longest:
        return None
    if kind == Share.Kind.PORTAL:
        return None, ()
    return _signing_configs.get(bucket_name)


def share_create(
    *,
    user,
    bucket_name: str,
    key: str,
    expires_in: int,
    kind: str = "portal",
    max_downloads: int | None = None,
    note: str = "",
    request: HttpRequest | None = None,
    actor_name: str | None = None,
    region: str | None = None,
    endpoint_url: str | None = None,
    cli_user=None,
) -> ShareResult:
    """Create a share and return the link. `user` is None only for the CLI
    (actor "cli" unless actor_name says otherwise).

    cli_user (CLI `--as USERNAME`) attributes a CLI share to a user. The CLI
    signs with the server's own AWS credentials, so anyone who can run
    manage.py can sign anything: grants are not checked there, only recorded."""
    bucket_name, key, expires_in, kind, max_downloads, note = _validated(
        bucket_name=bucket_name, key=key, expires_in=expires_in, kind=kind, max_downloads=max_downloads, note=note)

    # The common case first: a signed-in user whose grant allows the share. The
    # grant check and the INSERT are one statement (no read before the write);
    # if it writes nothing, the full path below says exactly why.
    if user is not None and not user.is_superuser:
        fast_config = _one_statement_config(bucket_name, kind, expires_in)
        if fast_config is not None:
            result = _write_share(
                user=user, bucket=None, bucket_name=bucket_name, key=key, kind=kind, expires_in=expires_in,
                max_downloads=max_downloads, note=note, request=request,
                creator_name=actor_name or user.get_username(), config=fast_config[0], if_granted=fast_config[1],
            )
            if result is not None:
                return result

    # Who, which bucket, and how long they may share for.
    if user is None:
        bucket = Bucket.objects.filter(name=bucket_name).first()
        limit = WEEK if kind == Share.Kind.DIRECT else settings.PORTAL_LINK_MAX_EXPIRY
        config = _cli_config(bucket_name, bucket, region, endpoint_url)
        creator_name = actor_name or (cli_user.get_username() if cli_user is not None else "cli")
        why = ""
    else:
        bucket, access = _bucket_and_access(user, bucket_name, key)
        if bucket is None:
            raise _deny(user=user, request=request, bucket_name=bucket_name, key=key, reason="no_bucket",
                        message=f"There is no bucket “{bucket_name}” you can share from.", status=404)
        if access is None:
            raise _deny(user=user, request=request, bucket_name=bucket_name, key=key, reason="no_grant",
                        message="You have no grant that covers this object.", status=403)
        if not access.can_share:
            raise _deny(user=user, request=request, bucket_name=bucket_name, key=key, reason="cannot_share",
                        message="Your grant lets you browse this folder but not share from it.", status=403)
        limit = access.max_expiry
        if kind == Share.Kind.DIRECT:
            limit = min(limit, WEEK)
        why = " (the longest link your grant allows)" if limit < (WEEK if kind == Share.Kind.DIRECT
                                                                  else settings.PORTAL_LINK_MAX_EXPIRY) else ""
        config = config_for_bucket(bucket)
        # Remembered for the one-statement path of the next direct link from this
        # bucket; that statement checks the registry still says the same.
        _signing_configs[bucket_name] = (config, tuple(getattr(bucket, name) for name in fastsql.SIGNING_COLUMNS))
        creator_name = actor_name or user.get_username()
    if expires_in > limit:
        raise ShareError(f"expires_in must be a whole number of seconds from 1 to {limit}{why}.",
                         field="expires_in")
    result = _write_share(user=user, cli_user=cli_user, bucket=bucket, bucket_name=bucket_name, key=key, kind=kind,
                          expires_in=expires_in, max_downloads=max_downloads, note=note, request=request,
                          creator_name=creator_name, config=config)
    assert result is not None
    return result


def share_create_with_token(*, bearer_digest: str, bucket_name: str, key: str, expires_in: int,
                            kind: str = "portal", max_downloads: int | None = None, note: str = "",
                            request: HttpRequest | None = None) -> ShareResult | None:
    """share_create() for whoever holds the API token whose digest is
    bearer_digest (tokens.bearer_digest), on the
    common path only: the token lookup, the grant check and the writes are one
    statement on PostgreSQL (fastsql.insert_share_by_token). The result's
    `bearer` names the user and the token.

    None: nothing was written (an unknown token, an inactive user or a
    superuser, no grant that allows it, a first direct link from a bucket…):
    authenticate the token, then call share_create(), which says why. Bad input
    raises ShareError, as share_create() would; the caller, which has not yet
    authenticated anyone, should not show it before it has."""
    bucket_name, key, expires_in, kind, max_downloads, note = _validated(
        bucket_name=bucket_name, key=key, expires_in=expires_in, kind=kind, max_downloads=max_downloads, note=note)
    fast_config = _one_statement_config(bucket_name, kind, expires_in)
    if fast_config is None:
        return None
    return _write_share(user=None, bucket=None, bucket_name=bucket_name, key=key, kind=kind, expires_in=expires_in,
                        max_downloads=max_downloads, note=note, request=request, creator_name="",
                        config=fast_config[0], if_granted=fast_config[1], bearer_digest=bearer_digest)


# bucket name -> (signing configuration, the registry's signing columns it came
# from), learned by share_create's full path. Only a hint: the one-statement
# path writes nothing unless the registry row still holds the same values.
_signing_configs: dict[str, tuple[s3.BucketConfig, tuple[str, ...]]] = {}


def _write_share(*, user, bucket: Bucket | None, bucket_name: str, key: str, kind: str, expires_in: int,
                 max_downloads: int | None, note: str, request: HttpRequest | None, creator_name: str,
                 config: s3.BucketConfig | None, cli_user=None, if_granted: tuple[str, ...] | None = None,
                 bearer_digest: str | None = None) -> ShareResult | None:
    """Sign (direct links), then write the share and its audit event together.

    if_granted (not None) takes the one-statement path for `user`: the bucket
    is found by name and the share is written only if a grant allows it; for a
    direct link if_granted holds the registry's signing columns that `config`
    came from, and nothing is written unless the registry still holds them
    (a portal link passes ()). bearer_digest (with if_granted, user None): the
    user is whoever holds that API token, as the statement finds them. Returns
    None when nothing was written."""
    now = timezone.now()
    requested_expires_at = now + dt.timedelta(seconds=expires_in)
    expires_at = requested_expires_at
    warning: str | None = None
    url = ""
    token_nonce = ""

    if kind == Share.Kind.DIRECT:
        # A presigned URL dies with the credentials that signed it (aws-cli #5076):
        # the real expiry is the earlier of the two.
        try:
            temporary, credential_end = s3.credential_expiry(config)
        except s3.S3Error as exc:
            raise ShareError(exc.message, status=502) from None
        sign_for = expires_in
        if credential_end is not None and credential_end < requested_expires_at:
            remaining = int((credential_end - now).total_seconds())
            if remaining < 1:
                raise ShareError("The portal's AWS credentials have expired; a direct link cannot be signed. "
                                 "Use a portal link, or ask an operator to refresh the credentials.", status=502)
            sign_for = remaining
            expires_at = now + dt.timedelta(seconds=remaining)
            warning = (f"This direct link stops working after {_human_duration(remaining)}, sooner than the "
                       f"{_human_duration(expires_in)} you asked for, because the AWS credentials that sign it "
                       f"expire then. Share a portal link instead to keep it working for the full time.")
        elif temporary and credential_end is None:
            warning = ("This direct link is signed with temporary AWS credentials and may stop working before "
                       "its expiry. Share a portal link instead to be sure it lasts.")
        try:
            url = s3.presign_get(config, key, expires_in=sign_for)
        except s3.S3Error as exc:
            raise ShareError(exc.message, status=400 if exc.status == 400 else 502) from None
    else:
        token_nonce = secrets.token_urlsafe(32)

    share = Share(
        bucket=bucket,
        bucket_name=bucket_name,
        key=key,
        kind=kind,
        created_by=user if user is not None else cli_user,
        created_by_name=creator_name[:150],
        created_at=now,
        expires_in=expires_in,
        requested_expires_at=requested_expires_at,
        expires_at=expires_at,
        max_downloads=max_downloads,
        note=note,
        token_nonce=token_nonce,
    )
    token = None
    if kind == Share.Kind.PORTAL:
        token = token_for(share)
        share.token_digest = token_digest(token)
    # Never the URL or the token: a link is a bearer credential.
    details = {
        "kind": kind,
        "expires_in": expires_in,
        "requested_expires_at": requested_expires_at.isoformat(),
        "expires_at": expires_at.isoformat(),
    }
    if max_downloads is not None:
        details["max_downloads"] = max_downloads
    if user is None and bearer_digest is None:
        details["via"] = "cli"
    event = audit.event(audit.SHARE_CREATED, actor=user if user is not None else cli_user, actor_name=creator_name,
                        request=request, bucket=bucket_name, key=key, details=details)
    bearer = None
    if bearer_digest is not None:
        bearer = fastsql.insert_share_by_token(share, event, token_digest=bearer_digest,
                                               stale_before=now - tokens.LAST_USED_RESOLUTION,
                                               cap=max(settings.PORTAL_LINK_MAX_EXPIRY, 1),
                                               config_values=if_granted or None)
        if bearer is None:
            return None
        creator_name = bearer.username
    elif if_granted is not None:
        if not fastsql.insert_share_if_granted(share, event, user_id=user.pk,
                                               cap=max(settings.PORTAL_LINK_MAX_EXPIRY, 1),
                                               config_values=if_granted or None):
            return None
    else:
        # PostgreSQL: share + event in one atomic statement (details get share_id),
        # no BEGIN/COMMIT round trips; SQLite: one transaction queued for the write lock.
        fastsql.insert_share_with_event(share, event)

    if kind == Share.Kind.PORTAL:
        url = portal_url(share, request, token=token)
    log.debug("share %s created by %s: %s link to %s/%s", share.pk, creator_name, kind, bucket_name, key)
    return ShareResult(share=share, url=url, warning=warning, bearer=bearer)


# --- revoking and reading ---------------------------------------------------------

def share_revoke(*, share: Share, user, request: HttpRequest | None = None, bulk: bool = False) -> bool:
    """Revoke a share (one audit event). False if it was already revoked.

    The conditional UPDATE makes two revokers racing each other write one event.
    A direct link cannot be revoked (it is a signed S3 URL): ShareError 409,
    rather than a record that claims a link is dead while it still works."""
    if share.kind != Share.Kind.PORTAL:
        raise ShareError("A direct link cannot be revoked: it is a signed S3 URL that works until it expires. "
                         "Share portal links to keep that control.", status=409)
    now = timezone.now()
    revoker = user if user is not None and getattr(user, "is_authenticated", False) else None
    with transaction.atomic():
        changed = Share.objects.filter(pk=share.pk, revoked_at__isnull=True).update(
            revoked_at=now, revoked_by=revoker, status=Share.Status.REVOKED
        )
        if not changed:
            return False
        audit.record(audit.SHARE_REVOKED, actor=revoker, request=request, bucket=share.bucket_name,
                     key=share.key, share=share, details={"share_id": share.pk, "bulk": bulk})
    share.revoked_at, share.revoked_by, share.status = now, revoker, Share.Status.REVOKED
    return True


def shares_for_user(user) -> QuerySet[Share]:
    """The shares a user created, newest first."""
    if not getattr(user, "is_authenticated", False):
        return Share.objects.none()
    return Share.objects.filter(created_by=user).select_related("bucket")


def get_share_for_user(user, share_id) -> Share:
    """The user's own share (any share for a superuser); 404 for anything else,
    so that strangers learn nothing about other people's ids."""
    try:
        pk = int(str(share_id)) if _DIGITS.fullmatch(str(share_id)) else None
    except ValueError:
        pk = None
    if pk is None or not getattr(user, "is_authenticated", False):
        raise Http404("No such share")
    queryset = Share.objects.all() if user.is_superuser else Share.objects.filter(created_by=user)
    share = queryset.select_related("bucket").filter(pk=pk).first()
    if share is None:
        raise Http404("No such share")
    return share


def status_of(share: Share) -> str:
    return share.current_status()
