"""The share dialog, its result page, the QR code and "My shares".

Thin views: all rules (grants, expiry ranges, the record and its audit event)
live in services.share_create / share_revoke. Every share lookup goes through
services.get_share_for_user, so another user's share id is a 404."""
from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import F, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from . import browse, grants, qr, services
from .forms import ShareForm
from .models import Bucket, Share

MY_SHARES_PAGE_SIZE = 25

# ShareError.field names (the service's vocabulary) -> fields of ShareForm.
# "expires_in" is resolved per request: the custom box or the preset radios.
FORM_FIELDS = {"max_downloads": "max_downloads", "kind": "kind", "note": "note"}

STATUS_FILTERS = [
    ("", "All"),
    (Share.Status.ACTIVE, "Active"),
    (Share.Status.EXPIRED, "Expired"),
    (Share.Status.REVOKED, "Revoked"),
    (Share.Status.USED_UP, "Used up"),
]


def _error_page(request: HttpRequest, status: int, title: str, message: str) -> HttpResponse:
    return render(request, "shares/share_error.html", {"title": title, "message": message}, status=status)


def _target(request: HttpRequest) -> tuple[Bucket, str] | HttpResponse:
    """The bucket (404 for strangers) and key named in the query string."""
    bucket_name = request.GET.get("bucket", "")
    key = request.GET.get("key", "")
    bucket = grants.get_bucket_for_user(request.user, bucket_name)
    if not grants.key_is_valid(key) or key.endswith("/"):
        return _error_page(request, 400, "Choose a file to share",
                           "This page needs the file to share: open a folder and use the “Share” button of a file.")
    return bucket, key


@never_cache
@require_http_methods(["GET", "POST"])
def share_new(request: HttpRequest) -> HttpResponse:
    target = _target(request)
    if isinstance(target, HttpResponse):
        return target
    bucket, key = target
    access = grants.access_for(request.user, bucket, key)
    if access is None or not access.can_share:
        return _error_page(request, 403, "You cannot share this file",
                           "Your access to this bucket or folder does not include sharing. Ask an administrator "
                           "for a grant that allows sharing.")

    form = ShareForm(request.POST if request.method == "POST" else None, max_expiry=access.max_expiry)
    status = 200
    if request.method == "POST" and form.is_valid():
        try:
            result = services.share_create(
                user=request.user,
                bucket_name=bucket.name,
                key=key,
                expires_in=form.expires_in(),
                kind=form.cleaned_data["kind"],
                max_downloads=form.cleaned_data["max_downloads"],
                note=form.cleaned_data["note"],
                request=request,
            )
        except services.ShareError as exc:
            if exc.status == 404:
                raise Http404(exc.message) from None
            if exc.status == 403:
                return _error_page(request, 403, "You cannot share this file", exc.message)
            if exc.field == "expires_in":
                form.add_error(form.expiry_field, exc.message)
            else:
                form.add_error(FORM_FIELDS.get(exc.field or ""), exc.message)
            status = exc.status if exc.status >= 500 else 400
        else:
            if result.share.kind == Share.Kind.DIRECT:
                # A direct link is not stored anywhere (it is a bearer credential),
                # so it cannot be shown again: render it from this response only.
                return _result_page(request, result.share, url=result.url, warning=result.warning, fresh=True)
            # Shown once on the result page after the redirect ("Your link is ready").
            request.session[f"share-created-{result.share.pk}"] = {"warning": result.warning}
            return redirect("share_detail", share_id=result.share.pk)
    elif request.method == "POST":
        status = 400
    return render(
        request,
        "shares/share_new.html",
        {"form": form, "bucket": bucket, "key": key, "access": access, "filename": key.rsplit("/", 1)[-1],
         # Cancel goes back to the file's folder (the browse pages' own URL scheme).
         "folder_url": browse.folder_url(bucket.name, key[: key.rfind("/") + 1]),
         "object_url": browse.object_url(bucket.name, key)},
        status=status,
    )


def _result_page(request: HttpRequest, share: Share, *, url: str | None, warning: str | None,
                 fresh: bool = False) -> HttpResponse:
    now = timezone.now()
    status = share.current_status(now)
    context = {
        "share": share,
        "url": url,
        "warning": warning,
        "fresh": fresh,
        "status": status,
        "status_label": Share.Status(status).label,
        "is_active": status == Share.Status.ACTIVE,
        "expired": share.expires_at <= now,
        "filename": share.key.rsplit("/", 1)[-1],
        # Direct links: the QR is inlined, the portal cannot recompute the URL later.
        "qr_data_uri": qr.qr_data_uri(url) if url and share.kind == Share.Kind.DIRECT else None,
        "nav": "shares",
    }
    response = render(request, "shares/share_result.html", context)
    # The page holds a link (for direct links, a signed URL): keep it out of caches.
    response["Cache-Control"] = "no-store"
    return response


@require_GET
def share_detail(request: HttpRequest, share_id: int) -> HttpResponse:
    share = services.get_share_for_user(request.user, share_id)
    created = request.session.pop(f"share-created-{share.pk}", None)
    # Portal links are recomputed (never stored); a dead one is not offered for copying.
    live = share.kind == Share.Kind.PORTAL and share.current_status() == Share.Status.ACTIVE
    url = services.portal_url(share, request) if live else None
    return _result_page(request, share, url=url, warning=(created or {}).get("warning"), fresh=created is not None)


@require_GET
def share_qr(request: HttpRequest, share_id: int) -> HttpResponse:
    share = services.get_share_for_user(request.user, share_id)
    if share.kind != Share.Kind.PORTAL:
        # The signed URL of a direct link is not kept, so there is nothing to encode.
        raise Http404("A direct link cannot be shown again")
    svg = qr.qr_svg(services.portal_url(share, request))
    if svg is None:
        raise Http404("The link is too long for a QR code")
    response = HttpResponse(svg, content_type="image/svg+xml")
    response["Cache-Control"] = "no-store"
    return response


def _filter_by_status(shares: QuerySet[Share], status: str) -> QuerySet[Share]:
    """The same rules as Share.current_status, as a query (revoked wins, then used up, then expired)."""
    now = timezone.now()
    used_up = Q(max_downloads__isnull=False, download_count__gte=F("max_downloads"))
    if status == Share.Status.REVOKED:
        return shares.filter(revoked_at__isnull=False)
    shares = shares.filter(revoked_at__isnull=True)
    if status == Share.Status.USED_UP:
        return shares.filter(used_up)
    shares = shares.exclude(used_up)
    if status == Share.Status.EXPIRED:
        return shares.filter(expires_at__lte=now)
    return shares.filter(expires_at__gt=now)


@require_GET
def my_shares(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status", "")
    if status not in dict(STATUS_FILTERS):
        status = ""
    shares = services.shares_for_user(request.user).order_by("-created_at", "-id")
    if status:
        shares = _filter_by_status(shares, status)
    page = Paginator(shares, MY_SHARES_PAGE_SIZE).get_page(request.GET.get("page"))
    now = timezone.now()
    rows = []
    for share in page.object_list:
        row_status = share.current_status(now)
        rows.append({
            "share": share,
            "status": row_status,
            "status_label": Share.Status(row_status).label,
            "is_active": row_status == Share.Status.ACTIVE,
            # Portal links can be copied again: the URL is recomputed, never stored.
            "url": services.portal_url(share, request)
            if share.kind == Share.Kind.PORTAL and row_status == Share.Status.ACTIVE else None,
        })
    return render(request, "shares/my_shares.html", {
        "page": page, "rows": rows, "status": status, "status_label": dict(STATUS_FILTERS).get(status, ""),
        "status_filters": STATUS_FILTERS, "nav": "shares",
    })


@require_POST
def share_revoke(request: HttpRequest, share_id: int) -> HttpResponse:
    """POST only. Without confirm=yes it answers the confirmation page, whose form
    posts here again with confirm=yes: no inline JS, works without any JS."""
    share = services.get_share_for_user(request.user, share_id)
    if share.kind != Share.Kind.PORTAL:
        messages.error(request, "A direct link cannot be revoked: it is a signed S3 link that works until it "
                                "expires. Share portal links to keep that control.")
        return redirect("my_shares")
    if request.POST.get("confirm") != "yes":
        return render(request, "shares/share_revoke_confirm.html", {"share": share, "nav": "shares"})
    try:
        revoked = services.share_revoke(share=share, user=request.user, request=request)
    except services.ShareError as exc:
        messages.error(request, exc.message)
        return redirect("my_shares")
    if revoked:
        messages.success(request, f"Revoked the link to “{share.key}”. It stops working at once.")
    else:
        messages.info(request, "That link was already revoked.")
    return redirect("my_shares")
