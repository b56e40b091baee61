"""Forms for the share dialog and the profile page.

The share form only checks the *shape* of the input (a whole number, a known
unit, a known kind). Ranges that depend on the kind and the user's grant (0,
604801 for a direct link, over the grant's maximum) are the share function's
job: services.share_create raises ShareError with the field it blames, and the
view puts that message on the matching form field."""
from __future__ import annotations

import re

from django import forms

from .models import Share

WEEK = 604800

PRESETS = [
    ("3600", "1 hour"),
    ("86400", "1 day"),
    ("604800", "7 days"),
    ("custom", "Custom"),
]

UNITS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}
UNIT_CHOICES = [(name, name.capitalize()) for name in UNITS]

# Digits only: "1e3", "3600.5", "-1", "+5", "0x10" and "３６００" (full-width
# digits, which int() would accept) are all refused with the same plain message.
WHOLE_NUMBER = re.compile(r"[0-9]+", re.ASCII)
# More digits than any sane expiry; refusing early also keeps a 5,000-digit
# number away from int() (Python refuses to parse over 4,300 digits).
MAX_DIGITS = 12

NOTE_MAX = Share._meta.get_field("note").max_length


def humanize_seconds(seconds: int) -> str:
    """3600 -> "1 hour", 90000 -> "1 day 1 hour", for help texts."""
    parts = []
    for name, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count} {name}{'' if count == 1 else 's'}")
    return " ".join(parts[:2]) or "0 seconds"


def parse_whole_number(raw: str, *, what: str) -> int:
    value = (raw or "").strip()
    if not value:
        raise forms.ValidationError(f"Enter {what}.")
    if not WHOLE_NUMBER.fullmatch(value):
        raise forms.ValidationError(f"{what.capitalize()} must be a whole number, such as 3600.")
    if len(value.lstrip("0")) > MAX_DIGITS:
        raise forms.ValidationError(f"{what.capitalize()} is far too large.")
    return int(value)


class ShareForm(forms.Form):
    expiry = forms.ChoiceField(
        label="Link expires after", choices=PRESETS, initial="3600", widget=forms.RadioSelect
    )
    # CharFields, not IntegerField: Django's IntegerField quietly accepts "3600.0"
    # and " 1e3 " would be a confusing error; we want one plain rule.
    custom_value = forms.CharField(label="Custom expiry", required=False)
    custom_unit = forms.ChoiceField(label="Unit", choices=UNIT_CHOICES, initial="seconds", required=False)
    kind = forms.ChoiceField(
        label="Kind of link",
        choices=[
            (Share.Kind.PORTAL, "Portal link: revocable, counted, can have a download limit"),
            (Share.Kind.DIRECT, "Direct link: the raw S3 link, at most 7 days, cannot be revoked"),
        ],
        initial=Share.Kind.PORTAL,
        widget=forms.RadioSelect,
    )
    max_downloads = forms.CharField(
        label="Download limit (optional)",
        required=False,
        help_text="Portal links only. Leave empty for no limit.",
    )
    note = forms.CharField(
        label="Note (optional)",
        required=False,
        max_length=NOTE_MAX,
        help_text="Only you and the admins see it, e.g. who you sent the link to.",
        widget=forms.TextInput,
    )

    def __init__(self, *args, max_expiry: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.max_expiry = max_expiry
        if max_expiry:
            self.fields["expiry"].help_text = (
                f"Your grant allows links up to {humanize_seconds(max_expiry)} ({max_expiry} seconds); "
                f"direct links at most 7 days."
            )

    def clean_custom_value(self) -> int | None:
        raw = self.cleaned_data.get("custom_value", "")
        if self.data.get(self.add_prefix("expiry")) != "custom":
            return None  # a preset was chosen: the custom box is ignored
        return parse_whole_number(raw, what="a custom expiry")

    def clean_max_downloads(self) -> int | None:
        raw = (self.cleaned_data.get("max_downloads") or "").strip()
        if not raw:
            return None
        value = parse_whole_number(raw, what="the download limit")
        if value < 1:
            raise forms.ValidationError("The download limit must be at least 1, or empty for no limit.")
        return value

    def clean(self) -> dict:
        data = super().clean()
        kind = data.get("kind")
        if kind == Share.Kind.DIRECT and data.get("max_downloads"):
            self.add_error("max_downloads", "A direct link cannot count downloads: choose a portal link for a limit.")
        if kind and data.get("expiry") and not self.has_error(self.expiry_field):
            # The share function checks this too; here it gets a friendlier message
            # on the field the user actually typed into.
            seconds = self.expires_in()
            limit = self.limit_for(kind)
            if seconds < 1:
                self.add_error(self.expiry_field, "The expiry must be at least 1 second.")
            elif limit is not None and seconds > limit:
                why = "a direct link lives" if kind == Share.Kind.DIRECT and limit == WEEK else "your grant allows links of"
                self.add_error(
                    self.expiry_field,
                    f"That is too long: {why} at most {humanize_seconds(limit)} ({limit} seconds).",
                )
        return data

    def limit_for(self, kind: str) -> int | None:
        limit = self.max_expiry
        if kind == Share.Kind.DIRECT:
            limit = min(limit or WEEK, WEEK)
        return limit

    @property
    def expiry_field(self) -> str:
        """The field a range error about the expiry belongs on."""
        return "custom_value" if self.data.get(self.add_prefix("expiry")) == "custom" else "expiry"

    def expires_in(self) -> int:
        """Seconds, from a preset or the custom value times its unit (call after is_valid)."""
        data = self.cleaned_data
        if data["expiry"] != "custom":
            return int(data["expiry"])
        unit = UNITS.get(data.get("custom_unit") or "seconds", 1)
        return data["custom_value"] * unit


class ApiTokenForm(forms.Form):
    name = forms.CharField(label="Token name", max_length=100, help_text="What it is for, e.g. \"backup script\".")

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("Enter a name for the token.")
        return name
