"""Test support for the append-only audit log (imported by conftest.py).

Transactional tests (live_server, transactional_db) end with `manage.py flush`,
which DELETEs (SQLite) or TRUNCATEs (PostgreSQL) every table; the audit triggers
refuse that. Tests, and only tests, open the purge window for the flush."""
from __future__ import annotations

import pytest
from django.core.management.commands import flush


@pytest.fixture(scope="session", autouse=True)
def audit_events_flushable_between_tests():
    from django.db import connections

    from shares.audit_db import session_purge_window

    original = flush.Command.handle

    def handle(self, **options):
        connection = connections[options.get("database") or "default"]
        with connection.cursor():
            pass  # connect first, so the SQLite function and the GUC apply to this connection
        if connection.alias == "default":
            with session_purge_window():
                return original(self, **options)
        return original(self, **options)

    flush.Command.handle = handle
    yield
    flush.Command.handle = original
