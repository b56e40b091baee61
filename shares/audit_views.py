"""The audit page (/audit/), a share's timeline and the CSV export.

For superusers and members of the "Auditors" group; anyone else gets a 403 page
and an access.denied event. Paging is keyset (?before=<id>), never COUNT(*)."""
from __future__ import annotations

import csv
import json
import unicodedata
from collections.abc import Iterator
from datetime import datetime, time, timedelta
from datetime import timezone as dt_timezone

from django import forms
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import F, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from . import audit
from .models import AuditEvent, Share

PAGE_SIZE = 50
NARROW_RANGE_DAYS = 31
EXPORT_CHUNK = 2000
ACTIONS = [
    audit.SHARE_CREATED, audit.SHARE_REVOKED, audit.LINK_VISITED, audit.ACCESS_DENIED, audit.LOGIN,
    audit.LOGIN_FAILED, audit.ADMIN_CHANGE, audit.TOKEN_CREATED, audit.TOKEN_DELETED, audit.AUDIT_PURGED,
]


def can_audit(user) -> bool:
    return bool(user.is_authenticated and (user.is_superuser or user.groups.filter(name="Auditors").exists()))


def _denied(request: HttpRequest) -> HttpResponse:
    with transaction.atomic():
        audit.record(audit.ACCESS_DENIED, actor=request.user, request=request,
                     details={"what": "audit", "reason": "not an auditor", "path": request.path[:200]})
    return render(request, "shares/audit_denied.html", status=403)


# --- showing untrusted values -------------------------------------------------------------

def visible(value: object) -> str:
    """Control, format and line/paragraph-separator characters become \\uXXXX, so
    that a key cannot forge a line, reorder text (bidi overrides) or hide itself.
    HTML is escaped by the template as usual."""
    text = "" if value is None else str(value)
    out = []
    for char in text:
        if unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn") and char != " ":
            out.append(f"\\u{ord(char):04x}")
        elif char == "\\":
            out.append("\\\\")  # so a literal "\u000a" typed into a key stays distinguishable
        else:
            out.append(char)
    return "".join(out)


# --- filters ----------------------------------------------------------------------------

class AuditFilterForm(forms.Form):
    user = forms.CharField(required=False, max_length=150, label="User")
    action = forms.ChoiceField(required=False, label="Action",
                               choices=[("", "Any action")] + [(a, a) for a in ACTIONS])
    bucket = forms.CharField(required=False, max_length=63, label="Bucket")
    prefix = forms.CharField(required=False, max_length=1024, label="Key prefix", strip=False)
    q = forms.CharField(required=False, max_length=200, label="Key contains")
    date_from = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))
    before = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)

    def clean(self):
        data = super().clean()
        if data.get("date_from") and data.get("date_to") and data["date_from"] > data["date_to"]:
            raise forms.ValidationError("“From” must be on or before “To”.")
        return data


def filtered_events(data: dict) -> QuerySet[AuditEvent]:
    events = AuditEvent.objects.all()
    if data.get("user"):
        # The id when the account exists (indexed, survives renames); the name
        # snapshot otherwise (deleted users, failed sign-ins with unknown names).
        user_id = get_user_model().objects.filter(username=data["user"]).values_list("id", flat=True).first()
        events = events.filter(actor_id=user_id) if user_id else events.filter(actor_name=data["user"])
    if data.get("action"):
        events = events.filter(action=data["action"])
    if data.get("bucket"):
        events = events.filter(bucket=data["bucket"])
    if data.get("prefix"):
        events = events.filter(key__startswith=data["prefix"])
    if data.get("q"):
        events = events.filter(key__icontains=data["q"])
    zone = timezone.get_current_timezone()  # the user's zone (tz cookie), else TIME_ZONE
    if data.get("date_from"):
        events = events.filter(created_at__gte=timezone.make_aware(datetime.combine(data["date_from"], time.min), zone))
    if data.get("date_to"):
        end = datetime.combine(data["date_to"] + timedelta(days=1), time.min)
        events = events.filter(created_at__lt=timezone.make_aware(end, zone))
    return events


def newest_first(data: dict):
    """Order by id, newest first. For a short date range in the past, order by
    id+0 instead: same order, but PostgreSQL then reads the range through the
    created_at index and sorts a few thousand rows, rather than walking the
    primary key back from today until it reaches the range (it cannot know that
    ids and times rise together)."""
    start, end = data.get("date_from"), data.get("date_to") or timezone.localdate()
    if start and (end - start).days <= NARROW_RANGE_DAYS:
        return (F("id") + 0).desc()
    return "-id"


def _row(event: AuditEvent) -> dict:
    return {
        "id": event.id,
        "created_at": event.created_at,
        "actor": visible(event.actor_name) or "—",
        "action": visible(event.action),
        "bucket": visible(event.bucket),
        "key": visible(event.key),
        "share_id": event.share_id,
        "ip": event.ip or "",
        "user_agent": visible(event.user_agent),
        "details": visible(json.dumps(event.details, sort_keys=True, ensure_ascii=False)) if event.details else "",
    }


@never_cache
@require_GET
def audit_log(request: HttpRequest) -> HttpResponse:
    if not can_audit(request.user):
        return _denied(request)
    form = AuditFilterForm(request.GET or None)
    rows: list[dict] = []
    next_before = None
    if not request.GET or form.is_valid():
        data = form.cleaned_data if request.GET else {}
        events = filtered_events(data)
        if data.get("before"):
            events = events.filter(id__lt=data["before"])
        # One extra row tells whether an older page exists: no COUNT(*).
        page = list(events.order_by(newest_first(data))[: PAGE_SIZE + 1])
        if len(page) > PAGE_SIZE:
            page = page[:PAGE_SIZE]
            next_before = page[-1].id
        rows = [_row(event) for event in page]
    query = request.GET.copy()
    query.pop("before", None)
    return render(request, "shares/audit.html", {
        "nav": "audit", "form": form, "rows": rows, "next_before": next_before,
        "filter_query": query.urlencode(), "paged": bool(request.GET.get("before")),
    })


@never_cache
@require_GET
def share_timeline(request: HttpRequest, share_id: int) -> HttpResponse:
    if not can_audit(request.user):
        return _denied(request)
    events = list(AuditEvent.objects.filter(share_id=share_id).order_by("id")[:5000])
    share = Share.objects.filter(pk=share_id).first()
    if share is None and not events:
        raise Http404("No such share")
    return render(request, "shares/audit_share.html", {
        "nav": "audit", "share": share, "share_id": share_id,
        "share_key": visible(share.key) if share else (visible(events[0].key) if events else ""),
        "rows": [_row(event) for event in events],
    })


# --- CSV ------------------------------------------------------------------------------------

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CSV_HEADER = ["id", "time_utc", "actor", "action", "bucket", "key", "share_id", "ip", "user_agent", "details"]


def csv_cell(value: object) -> str:
    """A spreadsheet must not run a cell as a formula: prefix ' (OWASP advice)."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_lines(events: QuerySet[AuditEvent]) -> Iterator[str]:
    writer = csv.writer(_Echo())  # QUOTE_MINIMAL: a newline in a key is quoted, not a new record
    yield writer.writerow(CSV_HEADER)
    fields = ("id", "created_at", "actor_name", "action", "bucket", "key", "share_id", "ip", "user_agent", "details")
    # values_list + iterator: no model instances, a server-side cursor on PostgreSQL,
    # constant memory at any size.
    for row in events.order_by("id").values_list(*fields).iterator(chunk_size=EXPORT_CHUNK):
        ident, created, actor, action, bucket, key, share_id, ip, agent, details = row
        yield writer.writerow([
            ident, created.astimezone(dt_timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            csv_cell(actor), csv_cell(action), csv_cell(bucket), csv_cell(key), share_id or "", ip or "",
            csv_cell(agent), csv_cell(json.dumps(details, sort_keys=True, ensure_ascii=False) if details else ""),
        ])


@never_cache
@require_GET
def audit_export(request: HttpRequest) -> HttpResponse:
    if not can_audit(request.user):
        return _denied(request)
    form = AuditFilterForm(request.GET)
    if not form.is_valid():
        message = "; ".join(str(e) for errors in form.errors.values() for e in errors)
        return HttpResponse(f"Bad filter: {message}\n", status=400, content_type="text/plain; charset=utf-8")
    events = filtered_events(form.cleaned_data)
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response = StreamingHttpResponse(_csv_lines(events), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="audit-{stamp}.csv"'
    return response
