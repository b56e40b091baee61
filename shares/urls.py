"""Each feature area keeps its own URL module, included here."""
from django.urls import include, path

urlpatterns: list = [
]
