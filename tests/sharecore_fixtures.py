"""Helpers for the share tests: the odd keys, and downloading a link for real."""
from __future__ import annotations

import urllib.error
import urllib.request

# Every odd key the browse issue lists: each must share and download as itself.
ODD_KEYS = [
    "plain.txt",
    "with space.txt",
    "a+b.txt",
    "100%.txt",
    "hash#tag.txt",
    "what?.txt",
    "equals=and(parens)[brackets].txt",
    "ünïcødé/日本語 ファイル.txt",
    'quote"and;semicolon.txt',
]
# Legal in S3, refused by nanio ("may not contain `.`, `..`, or empty segments"):
# checked by URL form (the signed path carries the key verbatim) instead.
NANIO_REFUSED_KEYS = ["dots/../up.txt", "double//slash.txt", "/leading-slash.txt", "./here.txt"]


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def fetch(url: str, *, follow: bool = False) -> tuple[int, bytes, dict]:
    """GET a URL for real over HTTP (nanio verifies the signature). Redirects are
    returned as they are unless `follow` is set."""
    opener = urllib.request.build_opener() if follow else urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(url, timeout=10) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)
