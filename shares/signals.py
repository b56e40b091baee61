"""Signal handlers that feed the audit log: sign-in succeeded/failed, and admin
changes to buckets and grants (written by post_save/post_delete, so inside the
admin's own transaction).

API tokens are not handled here: shares/tokens.py and the ApiToken admin already
write token.created / token.deleted, and one action must make exactly one event."""
from __future__ import annotations

from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.db.models.signals import post_delete, post_migrate, post_save
from django.dispatch import receiver
from django.urls import NoReverseMatch, reverse

from . import audit, audit_db  # noqa: F401  (audit_db registers the SQLite purge function)
from .models import Bucket, Grant

AUDITED_MODELS = (Bucket, Grant)

post_migrate.connect(audit_db.ensure_append_only_sqlite, dispatch_uid="audit.ensure_append_only")


def _over_http(request) -> bool:
    # A real sign-in arrives over HTTP and has a client address. The test client's
    # force_login() and shell sessions call login() with a bare HttpRequest: not a sign-in.
    return request is not None and bool(request.META.get("REMOTE_ADDR"))


@receiver(user_logged_in, dispatch_uid="audit.login")
def on_login(sender, request, user, **kwargs) -> None:
    if _over_http(request):
        audit.record(audit.LOGIN, actor=user, request=request)


@receiver(user_login_failed, dispatch_uid="audit.login_failed")
def on_login_failed(sender, credentials, request=None, **kwargs) -> None:
    if not _over_http(request):
        return
    # Django masks the password in `credentials`; take only the login that was tried.
    tried = str(credentials.get("username") or credentials.get("email") or credentials.get("login") or "")
    audit.record(audit.LOGIN_FAILED, actor_name=tried[:150], request=request)


def _admin_request():
    request = audit.current_request()
    if request is None:
        return None
    try:
        admin_root = reverse("admin:index")
    except NoReverseMatch:
        return None
    return request if request.path.startswith(admin_root) else None


def _describe(instance) -> str:
    return str(instance)[:200]


def _record_change(instance, change: str) -> None:
    request = _admin_request()
    if request is None:
        return  # only changes made through the admin are "admin changes"
    bucket = ""
    if isinstance(instance, Bucket):
        bucket = instance.name
    elif isinstance(instance, Grant):
        bucket = Bucket.objects.filter(pk=instance.bucket_id).values_list("name", flat=True).first() or ""
    audit.record(
        audit.ADMIN_CHANGE,
        actor=request.user,
        request=request,
        bucket=bucket,
        details={"model": instance._meta.model_name, "object_id": instance.pk, "change": change,
                 "object": _describe(instance)},
    )


@receiver(post_save, dispatch_uid="audit.admin_save")
def on_save(sender, instance, created: bool, raw: bool = False, **kwargs) -> None:
    if sender in AUDITED_MODELS and not raw:
        _record_change(instance, "created" if created else "changed")


@receiver(post_delete, dispatch_uid="audit.admin_delete")
def on_delete(sender, instance, **kwargs) -> None:
    if sender in AUDITED_MODELS:
        _record_change(instance, "deleted")
