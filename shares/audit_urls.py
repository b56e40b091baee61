from django.urls import path

from . import audit_views

urlpatterns = [
    path("audit/", audit_views.audit_log, name="audit_log"),
    path("audit/export.csv", audit_views.audit_export, name="audit_export"),
    path("audit/share/<int:share_id>/", audit_views.share_timeline, name="audit_share"),
]
