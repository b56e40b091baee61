"""QR codes of share links, as SVG (segno: pure Python, no image libraries)."""
from __future__ import annotations

import io

import segno


def _make(data: str) -> segno.QRCode:
    # Error level "M" survives a smudged screen; boost_error stays on so
    # that a short link gets the strongest level that fits the same size.
    return segno.make(data, error="m", micro=False)


def qr_svg(data: str, *, title: str = "QR code of the share link") -> bytes:
    """A standalone SVG document (for /shares/<id>/qr.svg)."""
    out = io.BytesIO()
    _make(data).save(out, kind="svg", scale=5, border=2, title=title, dark="#1c2430", light="#ffffff")
    return out.getvalue()


def qr_data_uri(data: str) -> str:
    """A data: URI for pages that must not let the browser fetch the link again
    (a direct link cannot be recomputed later). CSP allows img-src data:."""
    return _make(data).svg_data_uri(scale=5, border=2, dark="#1c2430", light="#ffffff")
