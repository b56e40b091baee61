from django.contrib import admin
from django.urls import include, path

from shares import views

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("accounts/", include("allauth.urls")),
    path("admin/login/", views.admin_login),  # one sign-in form (and its rate limits), not two
    path("admin/", admin.site.urls),
    path("", include("shares.urls")),
]
