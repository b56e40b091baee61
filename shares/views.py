"""Core pages: home (the buckets a user may see) and /healthz."""
from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from . import grants, health


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    buckets = grants.visible_buckets(request.user)
    return render(request, "shares/home.html", {"buckets": buckets})


@never_cache
@require_GET
@login_not_required
def healthz(request: HttpRequest) -> JsonResponse:
    report = health.check_all()
    return JsonResponse(report, status=200 if report["status"] == "ok" else 503)
