from django.urls import path, re_path

from . import links, share_views

urlpatterns: list = [
    # Portal links a recipient opens (sharecore: shares/links.py).
    path("s/<str:token>", links.share_link, name="share_link"),
    # A link pasted with a trailing slash still works; anything deeper is a clean
    # 404 page. Neither reaches Django's default 404, which would log the token.
    path("s/<str:token>/", links.share_link),
    re_path(r"^s/", links.unknown_link),
    # The share dialog, its result, the QR code and "My shares" (web UI).
    path("share/new", share_views.share_new, name="share_new"),
    path("shares/", share_views.my_shares, name="my_shares"),
    path("shares/<int:share_id>/", share_views.share_detail, name="share_detail"),
    path("shares/<int:share_id>/qr.svg", share_views.share_qr, name="share_qr"),
    path("shares/<int:share_id>/revoke", share_views.share_revoke, name="share_revoke"),
]
