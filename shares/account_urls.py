from django.urls import path  # noqa: F401

from . import account_views

urlpatterns: list = [
    # Profile: time zone and personal API tokens (issue 4).
    path("profile/", account_views.profile, name="profile"),
    path("profile/tokens", account_views.token_create, name="token_create"),
    path("profile/tokens/<int:token_id>/delete", account_views.token_delete, name="token_delete"),
]
