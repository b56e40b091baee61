"""The profile page: the user's time zone and personal API tokens.

A new token's plaintext is rendered once, straight from the POST response, and
never stored anywhere (tokens.create_api_token keeps only its SHA-256): a reload
cannot show it again."""
from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from . import tokens
from .forms import ApiTokenForm


def _profile_page(request: HttpRequest, *, form: ApiTokenForm | None = None, new_token: str | None = None,
                  new_token_name: str = "", status: int = 200) -> HttpResponse:
    current_tz = timezone.get_current_timezone_name()
    context = {
        "form": form or ApiTokenForm(),
        "api_tokens": tokens.tokens_for_user(request.user).order_by("-created_at", "-id"),
        "new_token": new_token,
        "new_token_name": new_token_name,
        "time_zone": current_tz,
        # UserTimezoneMiddleware activated the zone from the `tz` cookie app.js sets.
        "tz_from_browser": bool(request.COOKIES.get("tz")) and current_tz == request.COOKIES.get("tz"),
        "now": timezone.now(),
        "nav": "profile",
    }
    return render(request, "shares/profile.html", context, status=status)


@never_cache
@require_GET
def profile(request: HttpRequest) -> HttpResponse:
    return _profile_page(request)


@never_cache  # the response holds a secret: no cache may keep it
@require_POST
def token_create(request: HttpRequest) -> HttpResponse:
    form = ApiTokenForm(request.POST)
    if form.is_valid():
        try:
            api_token, plaintext = tokens.create_api_token(request.user, form.cleaned_data["name"], request=request)
        except tokens.TokenError as exc:
            form.add_error("name" if exc.field == "name" else None, exc.message)
        else:
            return _profile_page(request, new_token=plaintext, new_token_name=api_token.name)
    return _profile_page(request, form=form, status=400)


@require_POST
def token_delete(request: HttpRequest, token_id: int) -> HttpResponse:
    # delete_api_token answers 404 for a token that is not the user's.
    tokens.delete_api_token(request.user, token_id, request=request)
    messages.success(request, "Deleted the API token. Scripts that used it can no longer sign in with it.")
    return redirect("profile")
