"""Admin for the bucket registry and grants.

A bucket's region is learned from S3 (HeadBucket → x-amz-bucket-region) when the
admin leaves it blank, so every signature names the bucket's own region; an
admin may still type one to override. Grant prefixes are folders: "team-a" is
saved as "team-a/", so that it never covers "team-a-secret/"."""
from __future__ import annotations

import urllib.parse

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest

from . import grants, s3
from .models import Bucket, Grant


def validate_endpoint_url(value: str) -> str:
    """An endpoint is a scheme and a host (and port), nothing else: a path or a
    query would be signed into every URL and break it."""
    if not value:
        return value
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError("Enter an http:// or https:// URL with a host, e.g. https://minio.example.com:9000.")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password:
        raise ValidationError("Enter only the scheme, host and port: no path, query or credentials.")
    try:
        parts.port  # noqa: B018 – raises ValueError on a bad port
    except ValueError:
        raise ValidationError("The port is not a number between 0 and 65535.") from None
    return value.rstrip("/")


def learn_region(bucket: Bucket) -> str | None:
    """Fill a blank region from S3. Returns an error message, or None on success."""
    if bucket.region:
        return None
    try:
        bucket.region = s3.detect_region(s3.BucketConfig.from_bucket(bucket))
    except s3.S3Error as exc:
        return exc.message
    bucket.region_learned = True
    return None


class BucketForm(forms.ModelForm):
    class Meta:
        model = Bucket
        fields = "__all__"
        field_classes = {"endpoint_url": forms.CharField, "public_endpoint_url": forms.CharField}

    def clean_endpoint_url(self) -> str:
        return validate_endpoint_url(self.cleaned_data.get("endpoint_url", ""))

    def clean_public_endpoint_url(self) -> str:
        return validate_endpoint_url(self.cleaned_data.get("public_endpoint_url", ""))

    def clean_region(self) -> str:
        region = self.cleaned_data.get("region", "").strip()
        if region and not all(ch.isalnum() or ch == "-" for ch in region):
            raise ValidationError("A region looks like eu-west-1.")
        return region

    def clean(self) -> dict:
        data = super().clean()
        default, maximum = data.get("default_expiry"), data.get("max_expiry")
        if default and maximum and default > maximum:
            self.add_error("default_expiry", "The default expiry cannot be longer than the maximum expiry.")
        if data.get("public_endpoint_url") and not data.get("endpoint_url"):
            self.add_error("public_endpoint_url", "A public endpoint needs an endpoint URL too.")
        return data


@admin.register(Bucket)
class BucketAdmin(admin.ModelAdmin):
    form = BucketForm
    list_display = ("name", "label", "region", "endpoint_url", "enabled", "max_expiry")
    list_filter = ("enabled",)
    search_fields = ("name", "label")
    readonly_fields = ("region_learned", "created_at")

    def save_model(self, request: HttpRequest, obj: Bucket, form, change: bool) -> None:
        if "region" in form.changed_data or not obj.region:
            obj.region_learned = False
        problem = learn_region(obj)
        if problem:
            messages.warning(request, f"The region of “{obj.name}” could not be learned now ({problem}) "
                                      "It will be learned when the bucket is first browsed.")
        super().save_model(request, obj, form, change)


class GrantForm(forms.ModelForm):
    # strip=False: a prefix is a literal key prefix; " team" and "team" differ.
    prefix = forms.CharField(required=False, strip=False, max_length=1024,
                             help_text='A folder such as "team-a/"; blank for the whole bucket.')

    class Meta:
        model = Grant
        fields = ("bucket", "group", "user", "prefix", "can_share", "max_expiry")

    def clean_prefix(self) -> str:
        # Never strip or otherwise rewrite the prefix: keys are literal. Only make
        # it a folder, so that "team-a" cannot cover "team-a-secret/".
        prefix = grants.normalise_prefix(self.cleaned_data.get("prefix", ""))
        if prefix and not grants.key_is_valid(prefix):
            raise ValidationError("A prefix is at most 1,024 bytes of UTF-8.")
        return prefix

    def clean_max_expiry(self) -> int:
        value = self.cleaned_data["max_expiry"]
        if value < 1:
            raise ValidationError("The maximum expiry is at least one second.")
        return value

    def clean(self) -> dict:
        data = super().clean()
        if bool(data.get("group")) == bool(data.get("user")):
            raise ValidationError("Grant the bucket to a group or to a user (exactly one of them).")
        return data


@admin.register(Grant)
class GrantAdmin(admin.ModelAdmin):
    form = GrantForm
    list_display = ("bucket", "group", "user", "prefix", "can_share", "max_expiry")
    list_filter = ("bucket", "can_share")
    search_fields = ("prefix", "bucket__name", "group__name", "user__username")
    autocomplete_fields = ("user",)
    list_select_related = ("bucket", "group", "user")
