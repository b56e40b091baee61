"""The audit log in the Django admin: read-only (no add, change or delete)."""
from __future__ import annotations

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from .audit_views import ACTIONS, visible
from .models import AuditEvent, AuditSeal


class ReadOnlyAdmin(admin.ModelAdmin):
    """Append-only data: viewable, never added, changed or deleted from the admin."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class ActionFilter(admin.SimpleListFilter):
    # Known action names, not SELECT DISTINCT over a million rows.
    title = "action"
    parameter_name = "action"

    def lookups(self, request, model_admin):
        return [(a, a) for a in ACTIONS]

    def queryset(self, request, queryset):
        return queryset.filter(action=self.value()) if self.value() else queryset


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("id", "created_at", "actor_name", "action", "bucket", "shown_key", "share_link", "ip")
    list_filter = (ActionFilter, ("created_at", admin.DateFieldListFilter))
    search_fields = ("actor_name", "key")
    date_hierarchy = None  # a date hierarchy would COUNT(*) a million rows per click
    show_full_result_count = False
    list_per_page = 100
    ordering = ("-id",)
    readonly_fields = [f.name for f in AuditEvent._meta.fields]

    @admin.display(description="key")
    def shown_key(self, event: AuditEvent) -> str:
        return format_html('<span class="mono">{}</span>', visible(event.key))

    @admin.display(description="share")
    def share_link(self, event: AuditEvent) -> str:
        if not event.share_id:
            return ""
        return format_html('<a href="{}">#{}</a>', reverse("audit_share", args=[event.share_id]), event.share_id)


@admin.register(AuditSeal)
class AuditSealAdmin(ReadOnlyAdmin):
    list_display = ("id", "period_start", "period_end", "event_count", "short_digest")
    exclude = ("event_ids",)  # the manifest can be large
    readonly_fields = ("period_start", "period_end", "first_event_id", "last_event_id", "event_count",
                       "events_digest", "previous_digest", "digest", "created_at")
    show_full_result_count = False

    @admin.display(description="digest")
    def short_digest(self, seal: AuditSeal) -> str:
        return format_html('<span class="mono">{}…</span>', seal.digest[:16])
