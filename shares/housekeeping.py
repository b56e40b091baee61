"""Housekeeping for shares and the audit log. Celery tasks (shares/tasks.py) and
management commands call these; each is idempotent: a second run changes nothing.

Tamper evidence (in the manner of CloudTrail digest files): each closed period of
events is sealed with an HMAC (key AUDIT_HMAC_KEY, outside the database) over a
manifest of per-event hashes, chained to the previous seal's digest.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from . import audit, ratelimit
from .audit_db import purge_window
from .models import AuditEvent, AuditSeal, Share

log = logging.getLogger(__name__)

PURGE_BATCH_SIZE = 2000
# A breath between purge batches, outside any transaction: on a small machine the
# purge otherwise takes a whole CPU and share creation's p99 doubles.
PURGE_PAUSE_SECONDS = 0.02
# A period is sealed only once it ended this long ago, so that a transaction
# that took its created_at before the period ended but committed later (ids
# and commits are not in time order on PostgreSQL) is still inside the seal.
SEAL_MARGIN = timedelta(seconds=getattr(settings, "AUDIT_SEAL_MARGIN_SECONDS", 300))
EPOCH = datetime(1970, 1, 1, tzinfo=dt_timezone.utc)
CANONICAL_FIELDS = ("id", "created_at", "actor_id", "actor_name", "action", "bucket", "key", "share_id", "ip",
                    "user_agent", "details")


# --- canonical form of an event -------------------------------------------------

def _micros(moment: datetime) -> int:
    delta = moment - EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def event_hash(row: tuple) -> str:
    """SHA-256 over a canonical JSON of every field (values_list row in CANONICAL_FIELDS order)."""
    values = list(row)
    values[1] = _micros(values[1])
    payload = json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]


def _manifest(rows: list[tuple]) -> str:
    # One line per event: "<id> <created_at µs> <hash>", so that verification can
    # name a removed event and tell a purged one (older than the cutoff) apart.
    return "\n".join(f"{row[0]} {_micros(row[1])} {event_hash(row)}" for row in rows)


def _parse_manifest(text: str) -> dict[int, tuple[int, str]]:
    entries = {}
    for line in text.splitlines():
        if line:
            ident, micros, digest = line.split(" ")
            entries[int(ident)] = (int(micros), digest)
    return entries


def _seal_digest(*, period_start: datetime, period_end: datetime, event_count: int, events_digest: str,
                 previous_digest: str) -> str:
    message = "|".join(
        ["v1", str(_micros(period_start)), str(_micros(period_end)), str(event_count), events_digest, previous_digest]
    )
    return hmac.new(settings.AUDIT_HMAC_KEY.encode(), message.encode(), hashlib.sha256).hexdigest()


def _period() -> timedelta:
    return timedelta(minutes=settings.AUDIT_SEAL_PERIOD_MINUTES)


def _floor(moment: datetime) -> datetime:
    size = int(_period().total_seconds() * 1_000_000)
    return EPOCH + timedelta(microseconds=(_micros(moment) // size) * size)


# --- sealing ----------------------------------------------------------------------

@dataclass
class SealPlan:
    period_start: datetime
    period_end: datetime
    event_count: int


def seal_audit(*, now: datetime | None = None, dry_run: bool = False) -> list[SealPlan]:
    """Seal every closed period after the last seal; an idle stretch becomes one
    empty seal. One pass over the events in time order (not one query per period),
    so catching up on a year of hourly periods stays quick."""
    now = now or timezone.now()
    horizon = _floor(now - SEAL_MARGIN)  # periods ending at or before this are closed
    last = AuditSeal.objects.order_by("-period_end").first()
    if last is not None:
        start, previous = last.period_end, last.digest
    else:
        first = AuditEvent.objects.order_by("created_at").values_list("created_at", flat=True).first()
        if first is None:
            return []
        start, previous = _floor(first), ""
    if start + _period() > horizon:
        return []
    plans: list[SealPlan] = []
    pending: list[AuditSeal] = []

    def seal(period_start: datetime, period_end: datetime, rows: list[tuple]) -> None:
        nonlocal previous
        rows.sort(key=lambda row: row[0])  # manifest in id order
        plans.append(SealPlan(period_start, period_end, len(rows)))
        if dry_run:
            return
        manifest = _manifest(rows)
        events_digest = hashlib.sha256(manifest.encode()).hexdigest()
        digest = _seal_digest(period_start=period_start, period_end=period_end, event_count=len(rows),
                              events_digest=events_digest, previous_digest=previous)
        pending.append(AuditSeal(
            period_start=period_start, period_end=period_end, event_count=len(rows),
            first_event_id=rows[0][0] if rows else None, last_event_id=rows[-1][0] if rows else None,
            event_ids=manifest, events_digest=events_digest, previous_digest=previous, digest=digest,
        ))
        previous = digest

    events = (AuditEvent.objects.filter(created_at__gte=start, created_at__lt=horizon)
              .order_by("created_at", "id").values_list(*CANONICAL_FIELDS).iterator(chunk_size=2000))
    cursor_start = start  # everything before this is sealed (or planned)
    group_start, group = None, []
    for row in events:
        period_start = _floor(row[1])
        if period_start != group_start:
            if group_start is not None:
                seal(group_start, group_start + _period(), group)
                cursor_start = group_start + _period()
            if period_start > cursor_start:
                seal(cursor_start, period_start, [])  # the idle stretch before this event
            group_start, group = period_start, []
        group.append(row)
    if group_start is not None:
        seal(group_start, group_start + _period(), group)
        cursor_start = group_start + _period()
    if cursor_start < horizon:
        seal(cursor_start, horizon, [])
    if pending:
        with transaction.atomic():
            AuditSeal.objects.bulk_create(pending, batch_size=200)
    return plans


# --- verification -------------------------------------------------------------------

@dataclass
class VerifyReport:
    seals: int = 0
    events: int = 0
    changed: list[int] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)
    inserted: list[int] = field(default_factory=list)
    purged: int = 0
    chain_errors: list[str] = field(default_factory=list)
    unsealed: int = 0
    purge_cutoff: datetime | None = None

    @property
    def ok(self) -> bool:
        return not (self.changed or self.removed or self.inserted or self.chain_errors)


def purge_cutoff(now: datetime | None = None) -> datetime | None:
    """The latest recorded purge cutoff, never later than the configured retention
    allows (so a forged audit.purged row cannot excuse deleting recent events)."""
    now = now or timezone.now()
    if settings.AUDIT_RETENTION_DAYS == 0:
        return None
    allowed = now - timedelta(days=settings.AUDIT_RETENTION_DAYS)
    recorded = None
    for details in AuditEvent.objects.filter(action=audit.AUDIT_PURGED).values_list("details", flat=True):
        try:
            cutoff = datetime.fromisoformat(details["cutoff"])
        except (KeyError, TypeError, ValueError):
            continue
        recorded = cutoff if recorded is None else max(recorded, cutoff)
    if recorded is None:
        return None
    return min(recorded, allowed)


def verify_audit(*, now: datetime | None = None) -> VerifyReport:
    """Walk the seals and the events side by side, both in time order (one pass
    each, constant memory per seal), and name every difference."""
    report = VerifyReport()
    cutoff = purge_cutoff(now)
    report.purge_cutoff = cutoff
    cutoff_us = _micros(cutoff) if cutoff else None
    seals = AuditSeal.objects.order_by("period_end").iterator(chunk_size=100)
    last_seal = AuditSeal.objects.order_by("-period_end").first()
    if last_seal is None:
        report.unsealed = AuditEvent.objects.count()
        return report
    events = iter(
        AuditEvent.objects.filter(created_at__lt=last_seal.period_end).order_by("created_at", "id")
        .values_list(*CANONICAL_FIELDS).iterator(chunk_size=2000)
    )
    pending_row = next(events, None)
    missing: dict[int, int] = {}  # id -> seal id; checked at the end: removed or moved
    previous: AuditSeal | None = None
    for seal in seals:
        report.seals += 1
        if seal.previous_digest != (previous.digest if previous else ""):
            report.chain_errors.append(f"seal {seal.id}: chain broken (previous digest does not match the seal before)")
        if previous is not None and seal.period_start != previous.period_end:
            report.chain_errors.append(f"seal {seal.id}: gap or overlap after seal {previous.id}")
        events_digest = hashlib.sha256(seal.event_ids.encode()).hexdigest()
        digest = _seal_digest(period_start=seal.period_start, period_end=seal.period_end,
                              event_count=seal.event_count, events_digest=events_digest,
                              previous_digest=seal.previous_digest)
        if events_digest != seal.events_digest or not hmac.compare_digest(digest, seal.digest):
            report.chain_errors.append(f"seal {seal.id}: digest does not verify (seal altered or forged)")
        expected = _parse_manifest(seal.event_ids)
        if len(expected) != seal.event_count:
            report.chain_errors.append(f"seal {seal.id}: event count does not match its manifest")
        seen: set[int] = set()
        while pending_row is not None and pending_row[1] < seal.period_end:
            ident = pending_row[0]
            if pending_row[1] < seal.period_start or ident not in expected:
                # Before the first seal, in a gap, or absent from its period's manifest.
                report.inserted.append(ident)
            else:
                seen.add(ident)
                report.events += 1
                if expected[ident][1] != event_hash(pending_row):
                    report.changed.append(ident)
            pending_row = next(events, None)
        for ident in expected.keys() - seen:
            if cutoff_us is not None and expected[ident][0] < cutoff_us:
                report.purged += 1  # older than the recorded purge cutoff: gone by retention
            else:
                missing[ident] = seal.id
        previous = seal
    if missing:
        ids = list(missing)
        still_there: set[int] = set()
        for i in range(0, len(ids), 2000):
            still_there |= set(AuditEvent.objects.filter(id__in=ids[i:i + 2000]).values_list("id", flat=True))
        for ident in sorted(ids):
            # Still in the table but not in its period: its time was changed.
            (report.changed if ident in still_there else report.removed).append(ident)
    report.unsealed = AuditEvent.objects.filter(created_at__gte=last_seal.period_end).count()
    report.changed = sorted(set(report.changed))
    report.inserted = sorted(set(report.inserted) - set(report.changed))
    report.removed.sort()
    return report


# --- retention purge ------------------------------------------------------------------

@dataclass
class PurgeResult:
    count: int
    cutoff: datetime | None
    batches: int = 0
    longest_batch_seconds: float = 0.0


def purge_audit(*, now: datetime | None = None, dry_run: bool = False,
                batch_size: int = PURGE_BATCH_SIZE, pause: float = PURGE_PAUSE_SECONDS) -> PurgeResult:
    """Delete events older than AUDIT_RETENTION_DAYS (0 keeps everything), in
    batches, each its own short transaction; then record one audit.purged event.

    An event exactly at the cutoff stays. Killed halfway, the committed batches
    stay deleted and the next run deletes the rest."""
    import time

    if settings.AUDIT_RETENTION_DAYS == 0:
        return PurgeResult(0, None)
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.AUDIT_RETENTION_DAYS)
    old = AuditEvent.objects.filter(created_at__lt=cutoff)
    if dry_run:
        return PurgeResult(old.count(), cutoff)
    result = PurgeResult(0, cutoff)
    while True:
        if result.batches and pause:
            time.sleep(pause)
        started = time.monotonic()
        with transaction.atomic():
            ids = list(old.order_by("id").values_list("id", flat=True)[:batch_size])
            if not ids:
                break
            with purge_window():
                # A range, not a list of 2,000 parameters; created_at keeps it exact.
                deleted = old.filter(id__gte=ids[0], id__lte=ids[-1])._raw_delete(connection.alias)
        result.count += deleted
        result.batches += 1
        result.longest_batch_seconds = max(result.longest_batch_seconds, time.monotonic() - started)
    if result.count:
        with transaction.atomic():
            audit.record(audit.AUDIT_PURGED, actor_name="housekeeping",
                         details={"count": result.count, "cutoff": cutoff.isoformat(),
                                  "retention_days": settings.AUDIT_RETENTION_DAYS})
        log.info("audit purge: %d events older than %s deleted", result.count, cutoff.isoformat())
    return result


# --- shares ---------------------------------------------------------------------------------

@dataclass
class TidyResult:
    expired: int
    deleted: int
    rate_counters: int = 0  # portal-link rate-limit counters of finished windows, deleted


def tidy_shares(*, now: datetime | None = None, dry_run: bool = False) -> TidyResult:
    """Mark expired active shares; delete share rows finished (expired, used up or
    revoked) more than SHARE_RETENTION_DAYS ago (0 keeps them). Their audit events stay.
    Also deletes the link rate limit's database counters of finished windows."""
    now = now or timezone.now()
    to_expire = Share.objects.filter(status=Share.Status.ACTIVE, expires_at__lte=now, revoked_at__isnull=True)
    if settings.SHARE_RETENTION_DAYS:
        cutoff = now - timedelta(days=settings.SHARE_RETENTION_DAYS)
        old = Share.objects.filter(
            Q(revoked_at__lt=cutoff) | Q(revoked_at__isnull=True, expires_at__lt=cutoff)
        )
    else:
        old = Share.objects.none()
    if dry_run:
        return TidyResult(to_expire.count(), old.count(), ratelimit.prune_counters(now=now.timestamp(), dry_run=True))
    with transaction.atomic():
        expired = to_expire.update(status=Share.Status.EXPIRED)
    deleted = 0
    while True:
        with transaction.atomic():
            ids = list(old.order_by("id").values_list("id", flat=True)[:PURGE_BATCH_SIZE])
            if not ids:
                break
            # AuditEvent.share is DO_NOTHING without a constraint: events are untouched.
            count, _ = Share.objects.filter(id__in=ids).delete()
            deleted += len(ids)
    return TidyResult(expired, deleted, ratelimit.prune_counters(now=now.timestamp()))


def describe(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)
