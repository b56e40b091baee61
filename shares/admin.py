"""Admin registrations, one module per feature area."""
from . import admin_audit, admin_buckets, admin_shares  # noqa: F401
