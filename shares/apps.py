from django.apps import AppConfig


class SharesConfig(AppConfig):
    name = "shares"
    verbose_name = "S3 sharing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import signals  # noqa: F401  (audit hooks for sign-in and admin changes)
