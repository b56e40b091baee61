"""QR codes of share links, as SVG (segno: pure Python, no image libraries)."""
from __future__ import annotations

import io

import segno
from segno import DataOverflowError

STYLE = {"dark": "#1c2430", "light": "#ffffff", "border": 2}


def _make(data: str) -> segno.QRCode | None:
    """Level M survives a smudged screen; a long direct link (a session token
    makes it 2 KB or more) may only fit at level L, or not at all (None)."""
    for level in ("m", "l"):
        try:
            return segno.make(data, error=level, micro=False)
        except DataOverflowError:
            continue
    return None


def qr_svg(data: str, *, title: str = "QR code of the share link") -> bytes | None:
    """A standalone SVG document (for /shares/<id>/qr.svg), or None if the link is too long."""
    code = _make(data)
    if code is None:
        return None
    out = io.BytesIO()
    code.save(out, kind="svg", scale=5, title=title, **STYLE)
    return out.getvalue()


def qr_data_uri(data: str) -> str | None:
    """A data: URI for pages that must not let the browser fetch the link again
    (a direct link cannot be recomputed later). CSP allows img-src data:."""
    code = _make(data)
    return code.svg_data_uri(scale=5, **STYLE) if code is not None else None
