"""The database side of the append-only audit log: the one narrow path that may
DELETE event rows (the retention purge), and the locks housekeeping takes.

See migrations/0002_audit_append_only.py for the triggers this cooperates with."""
from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings
from django.db import connection
from django.db.backends.signals import connection_created

_window = threading.local()


def _purge_allowed() -> int:
    return 1 if getattr(_window, "open", False) else 0


def _register_sqlite_function(sender, connection, **kwargs) -> None:
    # The SQLite DELETE trigger calls portal_audit_purge(); it answers 1 only
    # inside purge_window() on this thread. Deterministic=False: never cached.
    if connection.vendor == "sqlite":
        connection.connection.create_function("portal_audit_purge", 0, _purge_allowed)


connection_created.connect(_register_sqlite_function, dispatch_uid="shares.audit_db.sqlite_function")


@contextlib.contextmanager
def purge_window() -> Iterator[None]:
    """Allow DELETE on shares_auditevent inside the current transaction only.

    Must be entered inside transaction.atomic(): on PostgreSQL SET LOCAL ends
    with the transaction; on SQLite the flag is per thread and closed on exit."""
    if not connection.in_atomic_block:
        raise RuntimeError("purge_window() must run inside transaction.atomic()")
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL portal.audit_purge = 'on'")
    _window.open = True
    try:
        yield
    finally:
        _window.open = False
        if connection.vendor == "postgresql" and connection.in_atomic_block and not connection.needs_rollback:
            # Close the window before the rest of the transaction runs.
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL portal.audit_purge = 'off'")


@contextlib.contextmanager
def session_purge_window() -> Iterator[None]:
    """For test tear-down only (`flush` between transactional tests): allow
    DELETE/TRUNCATE for the whole session until exit."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET portal.audit_purge = 'on'")
    _window.open = True
    try:
        yield
    finally:
        _window.open = False
        if connection.vendor == "postgresql" and connection.connection is not None:
            with connection.cursor() as cursor:
                cursor.execute("RESET portal.audit_purge")


class Busy(Exception):
    """Another run of the same housekeeping job holds the lock."""


@contextlib.contextmanager
def job_lock(name: str) -> Iterator[None]:
    """One run of a housekeeping job at a time, released even if the process dies.

    PostgreSQL: a session advisory lock (dropped with the connection; advisory
    locks belong to one database). SQLite (one host by nature): flock on a file
    beside the database (dropped by the kernel when the process dies). Raises
    Busy when already held."""
    if connection.vendor == "postgresql":
        key = (4242 << 32) | zlib.crc32(f"portal:{name}".encode())  # one bigint key per job
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s::bigint)", [key])
            (acquired,) = cursor.fetchone()
        if not acquired:
            raise Busy(name)
        try:
            yield
        finally:
            if connection.connection is not None:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(%s::bigint)", [key])
        return
    path, private = _sqlite_lock_path(name)
    with open(path, "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Busy(name) from None
        try:
            yield
        finally:
            if private:  # no other process can want it
                path.unlink(missing_ok=True)
            fcntl.flock(handle, fcntl.LOCK_UN)


def _sqlite_lock_path(name: str) -> tuple[Path, bool]:
    """(the lock file, whether it belongs to this process alone). One lock per
    database, as on PostgreSQL, not per data folder: two portals (or test
    runs) with their own databases never block each other. An in-memory
    database lives and dies with one process, and so does its lock file."""
    beside = file_beside_database(connection, f"{name}.lock")
    if beside is not None:
        return beside, False
    if connection.is_in_memory_db():
        return _in_data_folder(f"{name}-{os.getpid()}.lock"), True
    return _in_data_folder(f"{name}.lock"), False  # a URI filename: the data folder's lock


def file_beside_database(connection, suffix: str) -> Path | None:
    """`<SQLite database file>.<suffix>`, or None for an in-memory database or
    a URI filename ("file:…"), which name no plain file to put it beside."""
    database = str(connection.settings_dict["NAME"])
    if not database or database == ":memory:" or database.startswith("file:"):  # "mode=memory" is a URI
        return None
    return Path(f"{database}.{suffix}")


def _in_data_folder(filename: str) -> Path:
    folder = Path(settings.VAR_DIR) / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / filename


# The same triggers as migration 0002, idempotent.
SQLITE_ENSURE = [
    """CREATE TRIGGER IF NOT EXISTS shares_auditevent_no_update BEFORE UPDATE ON shares_auditevent
       BEGIN SELECT RAISE(ABORT, 'audit events are append-only: UPDATE refused'); END""",
    """CREATE TRIGGER IF NOT EXISTS shares_auditevent_no_delete BEFORE DELETE ON shares_auditevent
       WHEN portal_audit_purge() IS NOT 1
       BEGIN SELECT RAISE(ABORT, 'audit events are append-only: DELETE refused'); END""",
]


def ensure_append_only_sqlite(sender=None, using: str = "default", **kwargs) -> None:
    """post_migrate: on SQLite, a later migration that alters shares_auditevent
    rebuilds the table (copy, drop, rename) and the rebuild drops its triggers.
    Put them back, so the log never silently stops being append-only."""
    from django.db import connections

    conn = connections[using]
    if conn.vendor != "sqlite":
        return
    with conn.cursor() as cursor:
        cursor.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'shares_auditevent'")
        if cursor.fetchone() is None:
            return
        for statement in SQLITE_ENSURE:
            cursor.execute(statement)
