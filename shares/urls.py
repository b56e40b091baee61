"""Each feature area keeps its own URL module, included here."""
from django.urls import include, path

urlpatterns = [
    path("", include("shares.browse_urls")),  # /browse/...
    path("", include("shares.share_urls")),  # /shares/..., /s/<token>
    path("", include("shares.api_urls")),  # /api/...
    path("", include("shares.audit_urls")),  # /audit/...
    path("", include("shares.account_urls")),  # /profile/... (API tokens)
]
