"""The JSON API: create, list and revoke shares.

Auth is either the browser session (CSRF enforced, as for any form POST) or a
personal API token in `Authorization: Bearer …` (no cookies involved, so no
CSRF). Every answer is JSON, errors included: {"error": "…", "field": "…"}.
"""
from __future__ import annotations

import functools
import json
from typing import Any, Callable

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import RequestDataTooBig
from django.core.paginator import EmptyPage, Paginator
from django.http import Http404, HttpRequest, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.utils.functional import SimpleLazyObject
from django.views.decorators.csrf import csrf_exempt

from . import services, tokens
from .models import Share

PAGE_SIZE = 50
PAGE_SIZE_MAX = 200


def error(message: str, status: int, *, field: str | None = None, **headers: str) -> JsonResponse:
    body: dict[str, Any] = {"error": message}
    if field:
        body["field"] = field
    response = JsonResponse(body, status=status)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    response["Cache-Control"] = "no-store"
    return response


def _csrf_failure(request: HttpRequest) -> JsonResponse | None:
    """Run Django's CSRF check by hand, for session-authenticated requests only."""
    check = CsrfViewMiddleware(lambda req: None)
    check.process_request(request)
    rejected = check.process_view(request, None, (), {})
    if rejected is not None:
        return error("CSRF check failed. Send the X-CSRFToken header, or use an API token.", 403)
    return None


def api_view(*methods: str, with_token: dict[str, Callable] | None = None) -> Callable:
    """JSON errors for the method, auth and CSRF, and 404s, on top of a view.

    Bearer requests are authenticated by the token alone (and are CSRF-exempt:
    a browser never attaches this header by itself); session requests keep
    Django's CSRF protection.

    with_token: method -> a view for Bearer requests that authenticates the
    token itself, as part of its work (request, token digest) -> response, or
    None when it did nothing and the request should be authenticated and served
    the usual way."""

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs) -> JsonResponse:
            if request.method not in methods:
                return error(f"Method {request.method} is not allowed here.", 405, Allow=", ".join(methods))
            header = request.META.get("HTTP_AUTHORIZATION")
            shortcut = with_token.get(request.method) if with_token and header else None
            digest = tokens.bearer_digest(header) if shortcut is not None else None
            if digest is not None:
                response = shortcut(request, digest, *args, **kwargs)
                if response is not None:
                    response["Cache-Control"] = "no-store"
                    return response
            if header:
                user = tokens.authenticate_bearer(header)
                if user is None:
                    return error("The API token is invalid or has been deleted.", 401, WWW_Authenticate="Bearer")
                request.user = user
            else:
                if not request.user.is_authenticated:
                    return error("Sign in, or send a personal API token as 'Authorization: Bearer …'.", 401,
                                 WWW_Authenticate="Bearer")
                if request.method not in ("GET", "HEAD", "OPTIONS"):
                    failure = _csrf_failure(request)
                    if failure is not None:
                        return failure
            try:
                response = view(request, *args, **kwargs)
            except Http404:
                return error("Not found.", 404)
            except services.ShareError as exc:
                return error(exc.message, exc.status, field=exc.field)
            response["Cache-Control"] = "no-store"
            return response

        return login_not_required(csrf_exempt(wrapper))

    return decorate


def _json_body(request: HttpRequest) -> dict[str, Any]:
    # Huge integers stay strings so the field validator (not json) rejects them,
    # naming the field; Python refuses int() beyond 4300 digits anyway.
    def parse_int(text: str) -> int | str:
        return int(text) if len(text) <= 30 else text

    try:
        body = request.body
    except RequestDataTooBig:
        raise services.ShareError(f"The request body is too large: at most "
                                  f"{settings.DATA_UPLOAD_MAX_MEMORY_SIZE:,} bytes.", status=413) from None
    try:
        data = json.loads(body or b"", parse_int=parse_int)
    except (ValueError, UnicodeDecodeError):
        raise services.ShareError("The request body must be a JSON object.") from None
    if not isinstance(data, dict):
        raise services.ShareError("The request body must be a JSON object.")
    return data


def _share_json(share: Share, request: HttpRequest) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": share.pk,
        "bucket": share.bucket_name,
        "key": share.key,
        "kind": share.kind,
        "status": share.current_status(),
        "created_at": share.created_at.isoformat(),
        "expires_at": share.expires_at.isoformat(),
        "requested_expires_at": share.requested_expires_at.isoformat(),
        "revoked_at": share.revoked_at.isoformat() if share.revoked_at else None,
        "download_count": share.download_count,
        "max_downloads": share.max_downloads,
        "note": share.note,
    }
    # Portal links can be copied again; a direct link is never stored.
    if share.kind == Share.Kind.PORTAL and share.token_nonce:
        data["url"] = services.portal_url(share, request)
    return data


@api_view("GET")
def me(request: HttpRequest) -> JsonResponse:
    """Who the caller is: handy to check a token, and the baseline of bench/share.py."""
    return JsonResponse({"username": request.user.get_username()})


def _create_arguments(request: HttpRequest) -> dict[str, Any]:
    """share_create's arguments from the JSON body, or ShareError naming the field."""
    data = _json_body(request)
    for field in ("bucket", "key"):
        if field not in data or data[field] in (None, ""):
            raise services.ShareError(f"{field} is required.", field=field)
        if not isinstance(data[field], str):
            raise services.ShareError(f"{field} must be a string.", field=field)
    if "expires_in" not in data:
        raise services.ShareError("expires_in is required: a whole number of seconds, such as 3600.",
                                  field="expires_in")
    kind = data.get("kind", Share.Kind.PORTAL)
    if not isinstance(kind, str):
        raise services.ShareError('kind must be "portal" or "direct".', field="kind")
    return {
        "bucket_name": data["bucket"],
        "key": data["key"],
        "expires_in": services.parse_expires_in(data["expires_in"]),
        "kind": kind,
        "max_downloads": services.parse_max_downloads(data.get("max_downloads")),
        "note": data.get("note") or "",
    }


def _created(result: services.ShareResult) -> JsonResponse:
    share = result.share
    body: dict[str, Any] = {
        "id": share.pk,
        "url": result.url,
        "kind": share.kind,
        "expires_at": share.expires_at.isoformat(),
        "requested_expires_at": share.requested_expires_at.isoformat(),
    }
    if result.warning:
        body["warning"] = result.warning
    return JsonResponse(body, status=201)


def _create(request: HttpRequest) -> JsonResponse:
    return _created(services.share_create(user=request.user, **_create_arguments(request), request=request))


def _create_with_token(request: HttpRequest, digest: str) -> JsonResponse | None:
    """POST /api/shares with an API token, the common case: the token lookup is
    part of the share's one statement (services.share_create_with_token), not
    a query of its own before the view. None (nothing written): api_view
    authenticates the token and runs the view, which says what was wrong; so
    does bad input, which must not be answered before the token is checked."""
    try:
        result = services.share_create_with_token(bearer_digest=digest, **_create_arguments(request),
                                                  request=request)
    except services.ShareError:
        return None
    if result is None:
        return None
    bearer = result.bearer
    if bearer.stale:
        tokens.note_use(bearer.token_id, result.share.created_at)
    # As the usual path would have it, for anything that looks later; loaded only if it does.
    request.user = SimpleLazyObject(lambda: get_user_model()._default_manager.get(pk=bearer.user_id))
    return _created(result)


@api_view("GET", "POST", with_token={"POST": _create_with_token})
def shares(request: HttpRequest) -> JsonResponse:
    if request.method == "POST":
        return _create(request)
    return _list(request)


def _list(request: HttpRequest) -> JsonResponse:
    """The caller's shares, newest first, paged by number: ?page=1&page_size=50."""
    def number(name: str, default: int, maximum: int) -> int:
        raw = request.GET.get(name, str(default))
        if not raw.isascii() or not raw.isdigit() or len(raw) > 9 or not 1 <= int(raw) <= maximum:
            raise services.ShareError(f"{name} must be a whole number from 1 to {maximum}.", field=name)
        return int(raw)

    page_size = number("page_size", PAGE_SIZE, PAGE_SIZE_MAX)
    page_number = number("page", 1, 10**9)
    paginator = Paginator(services.shares_for_user(request.user).order_by("-created_at", "-id"), page_size)
    try:
        page = paginator.page(page_number)
    except EmptyPage:
        page = None
    results = [_share_json(share, request) for share in page] if page is not None else []
    return JsonResponse({
        "results": results,
        "page": page_number,
        "page_size": page_size,
        "count": paginator.count,
        "pages": paginator.num_pages,
        "next": page_number + 1 if page is not None and page.has_next() else None,
    })


@api_view("POST")
def revoke(request: HttpRequest, share_id: int) -> JsonResponse:
    share = services.get_share_for_user(request.user, share_id)
    revoked = services.share_revoke(share=share, user=request.user, request=request)
    share.refresh_from_db()
    return JsonResponse({**_share_json(share, request), "revoked": revoked})
