"""Browsing: one folder (S3 prefix + delimiter "/") per page, and one object.

URLs carry keys verbatim (never normalised):

- folder:  /browse/<bucket>/<folder prefix, ending in "/">
- object:  /object/<bucket>/<key>

each path percent-encoded with urllib.parse.quote(…, safe="/"), so "?", "#",
"%", spaces, "+" and non-ASCII survive; "//" and a leading "/" are kept because
the key is everything after the bucket segment. Browsers resolve "." and ".."
path segments (even as %2E), so a key or folder with such a segment travels as
a query parameter instead: /object/<bucket>/?key=… and /browse/<bucket>/?prefix=…
"""
from __future__ import annotations

import hashlib
import html
import logging
import re
import urllib.parse
from dataclasses import dataclass

from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.http import require_GET

from . import audit, grants, s3
from .models import Bucket

log = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
# Previous-page links: a map next-token → token-of-the-page-before, kept in the
# session per listing so that URLs stay short (a 100k-object folder has 1,000
# pages) and bookmarkable. Bounded, so that a long walk cannot bloat the session.
SESSION_PREV_KEY = "browse_prev"
MAX_PREV_LISTINGS = 8
MAX_PREV_TOKENS = 400


# --- URLs -------------------------------------------------------------------------

def _has_dot_segment(path: str) -> bool:
    return any(segment in (".", "..") for segment in path.split("/"))


def folder_url(bucket_name: str, prefix: str, *, root: str = "") -> str:
    """The page of one folder ("" = the bucket's root)."""
    root = root or reverse("browse_bucket", args=[bucket_name])
    if not prefix:
        return root
    if _has_dot_segment(prefix):
        return root + "?" + urllib.parse.urlencode({"prefix": prefix})
    return root + urllib.parse.quote(prefix, safe="/")


def object_url(bucket_name: str, key: str, *, root: str = "") -> str:
    """The detail page of one object."""
    root = root or reverse("browse_object_root", args=[bucket_name])
    if _has_dot_segment(key):
        return root + "?" + urllib.parse.urlencode({"key": key})
    return root + urllib.parse.quote(key, safe="/")


def share_url(bucket_name: str, key: str) -> str:
    """The share helper's "new share" page for one object."""
    return "/share/new?" + urllib.parse.urlencode({"bucket": bucket_name, "key": key})


# --- helpers ------------------------------------------------------------------------

def _deny(request: HttpRequest, *, what: str, reason: str, bucket: str, key: str, status: int,
          message: str) -> HttpResponse:
    """A friendly refusal, and an audit event: tampered URLs are worth knowing about."""
    audit.record(audit.ACCESS_DENIED, actor=request.user, request=request, bucket=bucket, key=key,
                 details={"what": what, "reason": reason})
    return render(request, "shares/browse/denied.html", {"message": message, "status": status}, status=status)


def _s3_error(request: HttpRequest, bucket: Bucket | None, exc: s3.S3Error) -> HttpResponse:
    return render(request, "shares/s3_error.html", {"bucket": bucket, "error": exc}, status=exc.status)


def ensure_region(bucket: Bucket) -> Bucket:
    """Learn a bucket's region on first use (HeadBucket) and remember it, so that
    every later signature names the bucket's own region."""
    if bucket.region:
        return bucket
    region = s3.detect_region(s3.BucketConfig.from_bucket(bucket))
    Bucket.objects.filter(pk=bucket.pk, region="").update(region=region, region_learned=True)
    bucket.region, bucket.region_learned = region, True
    return bucket


def _visible_bucket(request: HttpRequest, name: str, *, what: str, key: str
                    ) -> tuple[Bucket, list[grants.Access]] | HttpResponse:
    try:
        return grants.bucket_with_accesses(request.user, name)
    except Http404:
        return _deny(request, what=what, reason="no grant on bucket", bucket=name, key=key, status=404,
                     message="There is no bucket by that name that you may browse.")


def _page_size(request: HttpRequest) -> int:
    try:
        size = int(request.GET.get("size", DEFAULT_PAGE_SIZE))
    except ValueError:
        return DEFAULT_PAGE_SIZE
    return max(1, min(size, MAX_PAGE_SIZE))


def _listing_id(bucket: str, prefix: str, name_filter: str, size: int) -> str:
    raw = "\x00".join([bucket, prefix, name_filter, str(size)]).encode("utf-8", "surrogatepass")
    return hashlib.sha256(raw).hexdigest()[:16]


def _remember_previous(request: HttpRequest, listing: str, token: str, next_token: str) -> None:
    store: dict = request.session.get(SESSION_PREV_KEY) or {}
    tokens: dict = store.get(listing, {})
    if tokens.get(next_token) == token:
        return  # already known: spare the session write (a DB UPDATE)
    store.pop(listing, None)
    tokens[next_token] = token
    while len(tokens) > MAX_PREV_TOKENS:
        tokens.pop(next(iter(tokens)))
    store[listing] = tokens  # most recent listing last
    while len(store) > MAX_PREV_LISTINGS:
        store.pop(next(iter(store)))
    request.session[SESSION_PREV_KEY] = store


def _previous_token(request: HttpRequest, listing: str, token: str) -> str | None:
    """The token of the page before `token` ("" = the first page), if we know it."""
    if not token:
        return None
    tokens = (request.session.get(SESSION_PREV_KEY) or {}).get(listing, {})
    return tokens.get(token)


def _query(**params: object) -> str:
    present = {k: v for k, v in params.items() if v not in (None, "")}
    return "?" + urllib.parse.urlencode(present) if present else ""


@dataclass
class Crumb:
    label: str
    url: str


def _breadcrumbs(bucket: Bucket, prefix: str) -> list[Crumb]:
    crumbs = [Crumb(bucket.display_name, folder_url(bucket.name, ""))]
    if not prefix:
        return crumbs
    parts = prefix[:-1].split("/") if prefix.endswith("/") else prefix.split("/")
    so_far = ""
    for part in parts:
        so_far += part + "/"
        crumbs.append(Crumb(part or "(empty name)", folder_url(bucket.name, so_far)))
    return crumbs


@dataclass
class FolderRow:
    name: str
    url: str


def human_size(size: int) -> str:
    """1536 → "1.5 KB". Plain Python: filesizeformat per row costs more than the
    S3 call's parsing on a 1,000-row page."""
    if size < 1024:
        return "1 byte" if size == 1 else f"{size} bytes"
    value = float(size)
    for unit in ("KB", "MB", "GB", "TB", "PB"):
        value /= 1024
        if value < 1024 or unit == "PB":
            return f"{value:.1f} {unit}"
    return f"{size} bytes"  # pragma: no cover


_NEEDS_ESCAPE = re.compile(r"[&<>\"']")


def _escape(value: str) -> str:
    """html.escape(quote=True), skipping the five replaces for the common clean string."""
    return html.escape(value) if _NEEDS_ESCAPE.search(value) else value


def _rows_html(bucket_name: str, folders: list[FolderRow], files: list[s3.ObjectEntry], *, folder: str,
               can_share: bool) -> SafeString:
    """The table rows of a folder page. Django's template loop costs ~0.1 ms a row
    and format_html a good part of that; this is the page's hot path (see
    bench/browse.py), so it is plain f-strings with every value through
    html.escape (quote=True: safe inside attributes too)."""
    esc = _escape
    object_root = reverse("browse_object_root", args=[bucket_name])
    share_root = "/share/new?bucket=" + urllib.parse.quote_plus(bucket_name) + "&key="
    tz = timezone.get_current_timezone()
    parts = [
        f'<tr class="browse-folder">\n      <td><a class="mono" href="{esc(row.url)}">{esc(row.name)}</a></td>\n'
        f'      <td class="num muted">folder</td><td class="hide-sm"></td><td></td>\n    </tr>'
        for row in folders
    ]
    for entry in files:
        when = ""
        if entry.last_modified is not None:
            local = entry.last_modified.astimezone(tz)
            when = f'<time datetime="{local.isoformat()}">{esc(local.strftime("%Y-%m-%d %H:%M %Z"))}</time>'
        share = ""
        if can_share:
            # Same as share_url()'s quote_plus(key, safe=""), but quote() takes its
            # fast path when "/" is safe; "/" only appears where the key had one.
            href = share_root + urllib.parse.quote(entry.key, safe="/ ").replace("/", "%2F").replace(" ", "+")
            share = f'<a class="button secondary" href="{esc(href)}">Share</a>'
        # A key equal to the folder itself (a "folder marker" such as "/") has no
        # name of its own: show the whole key.
        name = entry.key[len(folder):] or entry.key
        parts.append(
            f'<tr class="browse-file">\n      <td><a class="mono" href="{esc(object_url(bucket_name, entry.key, root=object_root))}">'
            f'{esc(name)}</a></td>\n      <td class="num" title="{entry.size} bytes">{esc(human_size(entry.size))}</td>\n'
            f'      <td class="hide-sm">{when}</td>\n      <td>{share}</td>\n    </tr>'
        )
    return mark_safe("\n    ".join(parts))  # noqa: S308 – every value above went through html.escape


# --- views --------------------------------------------------------------------------

@require_GET
def browse_folder(request: HttpRequest, bucket: str, folder: str = "") -> HttpResponse:
    """One page of one folder. Grant-scoped: a user with a grant on "team-a/" sees,
    above it, only the folders leading to it, and nothing else."""
    if not folder:
        folder = request.GET.get("prefix", "")
    if folder and not folder.endswith("/"):
        # /browse/b/team-a names no folder; its folder is "team-a/".
        return HttpResponseRedirect(folder_url(bucket, folder + "/"))
    found = _visible_bucket(request, bucket, what="browse", key=folder)
    if isinstance(found, HttpResponse):
        return found
    bucket_obj, accesses = found
    if folder and not grants.key_is_valid(folder):
        return _deny(request, what="browse", reason="invalid prefix", bucket=bucket, key=folder, status=404,
                     message="That folder name is not a valid S3 key prefix.")

    covering = grants.best_access(accesses, folder)
    # Granted folders below this one: above a grant, a user sees only the way to it.
    leading = sorted({a.prefix for a in accesses if a.prefix.startswith(folder) and a.prefix != folder})
    if covering is None and not leading:
        return _deny(request, what="browse", reason="prefix outside grant", bucket=bucket, key=folder, status=403,
                     message="You have not been granted access to this folder.")

    name_filter = request.GET.get("q", "")
    size = _page_size(request)
    token = request.GET.get("token", "")
    context = {
        "bucket": bucket_obj,
        "prefix": folder,
        "crumbs": _breadcrumbs(bucket_obj, folder),
        "name_filter": name_filter,
        "size": size,
        "size_param": size if size != DEFAULT_PAGE_SIZE else "",
        "rows": "",
        "has_rows": False,
        "next_url": None,
        "previous_url": None,
        "first_url": None,
        "partial": covering is None,
        "can_share": bool(covering and covering.can_share),
        "form_action": folder_url(bucket_obj.name, folder).split("?")[0],
        "prefix_param": folder if _has_dot_segment(folder) else "",
    }

    if covering is None:
        # Above the grant: show only the next folder on the way to each granted
        # prefix. No S3 call, and nothing S3 holds beside them leaks.
        children = sorted({folder + p[len(folder):].split("/", 1)[0] + "/" for p in leading})
        folders = [FolderRow(name=c[len(folder):], url=folder_url(bucket_obj.name, c))
                   for c in children if c[len(folder):].startswith(name_filter)]
        context["has_rows"] = bool(folders)
        context["rows"] = _rows_html(bucket_obj.name, folders, [], folder=folder, can_share=False)
        return render(request, "shares/browse/folder.html", {**context, "nav": "buckets"})

    try:
        ensure_region(bucket_obj)
        page = s3.list_page(s3.BucketConfig.from_bucket(bucket_obj), prefix=folder, token=token or None,
                            page_size=size, name_prefix=name_filter)
    except s3.S3Error as exc:
        return _s3_error(request, bucket_obj, exc)

    # Defence in depth: whatever the server answers (a tampered continuation
    # token, a lax S3-compatible store), show only keys under this folder.
    root = reverse("browse_bucket", args=[bucket_obj.name])
    folders = [
        FolderRow(name=p[len(folder):], url=folder_url(bucket_obj.name, p, root=root))
        for p in page.folders if p.startswith(folder) and p != folder
    ]
    files = [f for f in page.files if f.key.startswith(folder)]
    context["has_rows"] = bool(folders or files)
    context["rows"] = _rows_html(bucket_obj.name, folders, files, folder=folder, can_share=context["can_share"])

    base = context["form_action"]
    common = {"prefix": context["prefix_param"], "q": name_filter, "size": context["size_param"]}
    listing = _listing_id(bucket_obj.name, folder, name_filter, size)
    if page.next_token:
        _remember_previous(request, listing, token, page.next_token)
        context["next_url"] = base + _query(**common, token=page.next_token)
    if token:
        previous = _previous_token(request, listing, token)
        first = base + _query(**common)
        context["first_url"] = first
        if previous is not None:
            context["previous_url"] = base + _query(**common, token=previous) if previous else first
    return render(request, "shares/browse/folder.html", {**context, "nav": "buckets"})


@require_GET
def object_detail(request: HttpRequest, bucket: str, key: str = "") -> HttpResponse:
    """HeadObject for one key, if a grant covers it."""
    if not key:
        key = request.GET.get("key", "")
    found = _visible_bucket(request, bucket, what="object", key=key)
    if isinstance(found, HttpResponse):
        return found
    bucket_obj, accesses = found
    if not grants.key_is_valid(key):
        return _deny(request, what="object", reason="invalid key", bucket=bucket, key=key[:2048], status=404,
                     message="That is not a valid S3 object key (1 to 1,024 bytes of UTF-8).")
    access = grants.best_access(accesses, key)
    if access is None:
        return _deny(request, what="object", reason="key outside grant", bucket=bucket, key=key, status=403,
                     message="You have not been granted access to this object.")
    try:
        ensure_region(bucket_obj)
        info = s3.head_object(s3.BucketConfig.from_bucket(bucket_obj), key)
    except s3.S3Error as exc:
        return _s3_error(request, bucket_obj, exc)
    folder = key.rsplit("/", 1)[0] + "/" if "/" in key else ""
    context = {
        "bucket": bucket_obj,
        "info": info,
        "name": key[len(folder):] or key,
        "crumbs": _breadcrumbs(bucket_obj, folder),
        "folder_url": folder_url(bucket_obj.name, folder),
        "can_share": access.can_share,
        "share_url": share_url(bucket_obj.name, key),
        "metadata": sorted(info.metadata.items()),
    }
    return render(request, "shares/browse/object.html", context)
