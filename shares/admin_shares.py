"""Shares and API tokens in the Django admin.

Shares are records: no add, no edit, no delete here. Admins revoke them — the
selected ones, or every active portal link of a user, a bucket or a folder —
through services.share_revoke, so each revocation writes its own audit event.
"""
from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from . import audit, services
from .models import ApiToken, Bucket, Share


class StatusFilter(admin.SimpleListFilter):
    """Status as a visitor would see it (expiry is computed, not stored)."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return Share.Status.choices

    def queryset(self, request, queryset):
        now = timezone.now()
        used_up = Q(max_downloads__isnull=False, download_count__gte=F("max_downloads"))
        value = self.value()
        if value == Share.Status.REVOKED:
            return queryset.filter(revoked_at__isnull=False)
        if value == Share.Status.USED_UP:
            return queryset.filter(used_up, revoked_at__isnull=True)
        if value == Share.Status.EXPIRED:
            return queryset.filter(revoked_at__isnull=True, expires_at__lte=now).exclude(used_up)
        if value == Share.Status.ACTIVE:
            return queryset.filter(revoked_at__isnull=True, expires_at__gt=now).exclude(used_up)
        return queryset


def revoke_all(queryset: QuerySet[Share], *, user, request: HttpRequest) -> tuple[int, int]:
    """Revoke every active portal link in `queryset`, one audit event each.
    Returns (revoked, skipped direct links)."""
    revoked = skipped = 0
    for share in queryset.filter(revoked_at__isnull=True).order_by("pk").iterator():
        if share.kind != Share.Kind.PORTAL:
            skipped += 1
            continue
        if services.share_revoke(share=share, user=user, request=request, bulk=True):
            revoked += 1
    return revoked, skipped


def _report(modeladmin: admin.ModelAdmin, request: HttpRequest, revoked: int, skipped: int) -> None:
    modeladmin.message_user(request, f"Revoked {revoked} portal link{'s' if revoked != 1 else ''}.",
                            messages.SUCCESS)
    if skipped:
        modeladmin.message_user(
            request,
            f"Skipped {skipped} direct link{'s' if skipped != 1 else ''}: a signed S3 URL cannot be revoked; "
            "it works until it expires (or until the signing key is deactivated).",
            messages.WARNING,
        )


class RevokeMatchingForm(forms.Form):
    created_by = forms.ModelChoiceField(queryset=get_user_model().objects.order_by("username"), required=False,
                                        label="Created by")
    bucket = forms.ModelChoiceField(queryset=Bucket.objects.order_by("name"), required=False)
    prefix = forms.CharField(required=False, max_length=1024, strip=False,
                             help_text='A folder such as "team-a/": keys that start with it. Needs a bucket.')
    confirm = forms.BooleanField(required=False, widget=forms.HiddenInput)

    def clean(self):
        data = super().clean()
        if not data.get("created_by") and not data.get("bucket"):
            raise forms.ValidationError("Choose a user, a bucket, or both.")
        if data.get("prefix") and not data.get("bucket"):
            self.add_error("prefix", "A prefix needs a bucket.")
        return data

    def matching(self) -> QuerySet[Share]:
        queryset = Share.objects.filter(revoked_at__isnull=True, kind=Share.Kind.PORTAL)
        if self.cleaned_data.get("created_by"):
            queryset = queryset.filter(created_by=self.cleaned_data["created_by"])
        if self.cleaned_data.get("bucket"):
            queryset = queryset.filter(bucket_name=self.cleaned_data["bucket"].name)
        if self.cleaned_data.get("prefix"):
            queryset = queryset.filter(key__startswith=self.cleaned_data["prefix"])
        return queryset


@admin.register(Share)
class ShareAdmin(admin.ModelAdmin):
    list_display = ("id", "bucket_name", "shown_key", "kind", "shown_status", "created_by_name", "created_at",
                    "expires_at", "downloads")
    list_filter = (StatusFilter, "kind", ("bucket", admin.RelatedOnlyFieldListFilter),
                   ("created_by", admin.RelatedOnlyFieldListFilter))
    search_fields = ("key",)
    list_select_related = ("bucket", "created_by")
    show_full_result_count = False
    list_per_page = 100
    ordering = ("-created_at", "-id")
    actions = ["revoke_selected"]
    # The token's nonce and digest stay out of the page: with LINK_TOKEN_KEY they
    # would be half of a working link.
    exclude = ("token_nonce", "token_digest")
    readonly_fields = [f.name for f in Share._meta.fields if f.name not in ("token_nonce", "token_digest")]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # shares are made by share_create (dialog, API, CLI), which checks grants

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # the audit trail refers to shares; housekeeping prunes old ones

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser or request.user.has_perm("shares.change_share")

    @admin.display(description="key")
    def shown_key(self, share: Share) -> str:
        return format_html('<span class="mono">{}</span>', share.key)

    @admin.display(description="status")
    def shown_status(self, share: Share) -> str:
        return Share.Status(share.current_status()).label

    @admin.display(description="downloads")
    def downloads(self, share: Share) -> str:
        return f"{share.download_count} / {share.max_downloads}" if share.max_downloads else str(share.download_count)

    @admin.action(description="Revoke selected portal links", permissions=["revoke"])
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[Share]) -> None:
        revoked, skipped = revoke_all(queryset, user=request.user, request=request)
        _report(self, request, revoked, skipped)

    def get_urls(self):
        custom = [path("revoke-matching/", self.admin_site.admin_view(self.revoke_matching_view),
                       name="shares_share_revoke_matching")]
        return custom + super().get_urls()

    def changelist_view(self, request: HttpRequest, extra_context=None):
        extra_context = {**(extra_context or {}), "can_revoke_matching": self.has_revoke_permission(request)}
        return super().changelist_view(request, extra_context)

    def revoke_matching_view(self, request: HttpRequest) -> HttpResponse:
        """Revoke every active portal link of a user, a bucket, or a folder of a
        bucket. The first POST shows how many would go; the second revokes."""
        if not self.has_revoke_permission(request):
            return HttpResponse("You may not revoke shares.", status=403)
        count = None
        form = RevokeMatchingForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            if form.cleaned_data.get("confirm"):
                with transaction.atomic():
                    revoked, skipped = revoke_all(form.matching(), user=request.user, request=request)
                _report(self, request, revoked, skipped)
                return HttpResponseRedirect(reverse("admin:shares_share_changelist"))
            count = form.matching().count()
            form = RevokeMatchingForm(initial={**form.cleaned_data, "confirm": True})
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Revoke portal links by user, bucket or prefix",
            "form": form,
            "count": count,
        }
        return TemplateResponse(request, "admin/shares/share/revoke_matching.html", context)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """List and delete only: a token's secret is shown once, to its owner."""

    list_display = ("name", "user", "prefix", "created_at", "last_used_at")
    search_fields = ("name", "user__username", "prefix")
    list_select_related = ("user",)
    exclude = ("digest",)
    readonly_fields = ("user", "name", "prefix", "created_at", "last_used_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def _record_deletion(self, request: HttpRequest, token: ApiToken) -> None:
        audit.record(audit.TOKEN_DELETED, actor=request.user, request=request,
                     details={"token_id": token.pk, "name": token.name, "prefix": token.prefix,
                              "owner": token.user.get_username(), "via": "admin"})

    def delete_model(self, request: HttpRequest, obj: ApiToken) -> None:
        with transaction.atomic():
            self._record_deletion(request, obj)
            super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        with transaction.atomic():
            for token in queryset.select_related("user"):
                self._record_deletion(request, token)
            super().delete_queryset(request, queryset)
