from django.urls import path

from . import api

urlpatterns: list = [
    # JSON API (sharecore): session + CSRF, or Authorization: Bearer <personal API token>.
    path("api/me", api.me, name="api_me"),
    path("api/shares", api.shares, name="api_shares"),
    path("api/shares/<int:share_id>/revoke", api.revoke, name="api_share_revoke"),
]
