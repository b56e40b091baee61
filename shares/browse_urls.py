"""Browsing URLs. Keys and folder prefixes are the rest of the path, verbatim
(see shares/browse.py for the encoding)."""
from django.urls import path, register_converter

from . import browse


class AnyPathConverter:
    """Like `path:`, but also matches newlines and other characters that `.`
    misses: an S3 key may hold any character but NUL."""

    regex = r"[\s\S]+"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(AnyPathConverter, "anypath")

urlpatterns = [
    path("browse/<str:bucket>/", browse.browse_folder, name="browse_bucket"),
    path("browse/<str:bucket>/<anypath:folder>", browse.browse_folder, name="browse_folder"),
    path("object/<str:bucket>/", browse.object_detail, name="browse_object_root"),
    path("object/<str:bucket>/<anypath:key>", browse.object_detail, name="browse_object"),
]
