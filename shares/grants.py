"""Selectors: what a user may see and share. Every lookup goes through here."""
from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db.models import Q, QuerySet
from django.http import Http404

from .models import Bucket, Grant

MAX_KEY_BYTES = 1024


def normalise_prefix(prefix: str) -> str:
    """A grant prefix names a folder: "team-a" and "team-a/" both mean "team-a/",
    so that a grant never covers "team-a-secret/"."""
    if prefix and not prefix.endswith("/"):
        return prefix + "/"
    return prefix


def key_is_valid(key: str) -> bool:
    return 0 < len(key.encode("utf-8", "surrogatepass")) <= MAX_KEY_BYTES and "\x00" not in key


@dataclass(frozen=True)
class Access:
    """The strongest access a user has to one key or folder."""

    can_share: bool
    max_expiry: int
    prefix: str


def _user_grants(user) -> QuerySet[Grant]:
    return Grant.objects.filter(Q(user=user) | Q(group__in=user.groups.all()), bucket__enabled=True)


def visible_buckets(user) -> QuerySet[Bucket]:
    if not user.is_authenticated:
        return Bucket.objects.none()
    if user.is_superuser:
        return Bucket.objects.filter(enabled=True)
    return Bucket.objects.filter(enabled=True, grants__in=_user_grants(user)).distinct()


def get_bucket_for_user(user, name: str) -> Bucket:
    """The bucket, or 404 to anyone who has no grant on it (strangers learn nothing)."""
    bucket = visible_buckets(user).filter(name=name).first()
    if bucket is None:
        raise Http404("No such bucket")
    return bucket


def grant_prefixes(user, bucket: Bucket) -> list[str]:
    """The folders a user is granted in a bucket ("" = all of it)."""
    if user.is_superuser:
        return [""]
    return sorted({normalise_prefix(g.prefix) for g in _user_grants(user).filter(bucket=bucket)})


def make_access(bucket: Bucket, *, can_share: bool, max_expiry: int, prefix: str) -> Access:
    """One grant as an Access: its prefix names a folder, and its maximum expiry
    never exceeds the bucket's nor the portal-link cap."""
    portal_cap = max(settings.PORTAL_LINK_MAX_EXPIRY, 1)
    return Access(can_share=can_share, max_expiry=min(max_expiry, bucket.max_expiry, portal_cap),
                  prefix=normalise_prefix(prefix))


def bucket_accesses(user, bucket: Bucket) -> list[Access]:
    """Every grant a user holds on one bucket, as Access values, in one query
    (a folder page needs both the covering grant and the prefixes above it)."""
    if not user.is_authenticated:
        return []
    if user.is_superuser:
        return [make_access(bucket, can_share=True, max_expiry=bucket.max_expiry, prefix="")]
    return [
        make_access(bucket, can_share=grant.can_share, max_expiry=grant.max_expiry, prefix=grant.prefix)
        for grant in _user_grants(user).filter(bucket=bucket)
    ]


def bucket_with_accesses(user, name: str) -> tuple[Bucket, list[Access]]:
    """get_bucket_for_user() and bucket_accesses() in one query: the bucket
    comes with the grants (select_related). 404 to anyone without a grant."""
    if user.is_authenticated and not user.is_superuser:
        found = list(_user_grants(user).filter(bucket__name=name).select_related("bucket"))
        if not found:
            raise Http404("No such bucket")
        bucket = found[0].bucket
        return bucket, [
            make_access(bucket, can_share=grant.can_share, max_expiry=grant.max_expiry, prefix=grant.prefix)
            for grant in found
        ]
    bucket = get_bucket_for_user(user, name)
    return bucket, bucket_accesses(user, bucket)


def best_access(accesses: list[Access], key: str) -> Access | None:
    """The strongest of `accesses` covering `key` (an object key or a folder prefix)."""
    best: Access | None = None
    for candidate in accesses:
        if not key.startswith(candidate.prefix):
            continue
        if best is None or (candidate.can_share, candidate.max_expiry) > (best.can_share, best.max_expiry):
            best = candidate
    return best


def access_for(user, bucket: Bucket, key: str) -> Access | None:
    """The best grant covering `key` (an object key or a folder prefix), or None."""
    return best_access(bucket_accesses(user, bucket), key)
