"""Account rules: a staff portal, so admins create accounts. Sign-up opens only
when SIGNUP_ENABLED is on, and then only to addresses in SIGNUP_EMAIL_DOMAINS."""
from __future__ import annotations

from allauth.account.adapter import DefaultAccountAdapter
from django import forms
from django.conf import settings


class PortalAccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request) -> bool:
        return settings.SIGNUP_ENABLED

    def clean_email(self, email: str) -> str:
        email = super().clean_email(email)
        if settings.SIGNUP_ENABLED:
            domain = email.rsplit("@", 1)[-1].lower()
            if domain not in settings.SIGNUP_EMAIL_DOMAINS:
                allowed = ", ".join(settings.SIGNUP_EMAIL_DOMAINS)
                raise forms.ValidationError(f"Sign-up is open to addresses at {allowed} only.")
        return email
