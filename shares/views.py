"""Core pages: home (the buckets a user may see) and /healthz."""
from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_safe

from . import grants, health


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    buckets = grants.visible_buckets(request.user)
    return render(request, "shares/home.html", {"buckets": buckets})


@never_cache
@require_safe  # load balancers probe with GET or HEAD
@login_not_required
def healthz(request: HttpRequest) -> JsonResponse:
    report = health.check_all()
    return JsonResponse(report, status=200 if report["status"] == "ok" else 503)


@require_GET
@login_not_required
def admin_login(request: HttpRequest) -> HttpResponse:
    """The admin's own sign-in form would bypass allauth's rate limits: send
    people to the portal's sign-in page instead. A signed-in user who is not
    staff gets 403 here (sending them back would loop)."""
    if request.user.is_authenticated:
        raise PermissionDenied("Only administrators can use the admin site.")
    target = request.GET.get("next", "")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        target = reverse("admin:index")
    return redirect_to_login(target, login_url=reverse("account_login"))
