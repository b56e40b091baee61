from django.http import HttpRequest


def portal(request: HttpRequest) -> dict:
    user = getattr(request, "user", None)
    is_auditor = bool(
        user
        and user.is_authenticated
        and (user.is_superuser or user.groups.filter(name="Auditors").exists())
    )
    return {"can_audit": is_auditor}
