"""Precompiled SQL for the hottest statements of sharing (issue 4's benchmark).

Creating a share and visiting a portal link each run a few small statements;
through the ORM most of their cost is Django compiling the query (0.3–0.8 ms
each), not the database (~0.1 ms). These helpers build each statement's SQL
once per database vendor and reuse it, while still using Django's own field
adapters (get_db_prep_save) and result converters (get_db_converters), so
values read and written are exactly what the ORM would read and write, on
SQLite and on PostgreSQL. Only the statements on those two paths live here
(an API token's lookup among them, when it is part of a share's statement);
everything else stays ORM.

insert() skips the pre_save/post_save signals: no receiver listens for the
models written here (Share, AuditEvent; signals.AUDITED_MODELS is Bucket and
Grant), and the audit log is written explicitly by the callers.
"""
from __future__ import annotations

import datetime as dt
import fcntl
import os
import threading
from contextlib import contextmanager
from typing import Any, NamedTuple

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Model

from .audit_db import file_beside_database
from .models import Bucket, Share

_cache: dict[tuple, Any] = {}

# SQLite has one writer at a time. A writer that finds the lock taken sleeps and
# retries (1, 2, 5, 10… ms: SQLite's busy handler), far longer than a share's
# transaction holds it, so under load most of a writer's time went to sleeping.
# The hot writes queue instead: threads of one process on a threading lock,
# processes (gunicorn workers, Celery) on an flock() of a file beside the
# database; the kernel wakes the next waiter as soon as the lock is released.
_sqlite_writer = threading.Lock()
_sqlite_lock_files: dict[tuple[str, int], int] = {}


def _sqlite_lock_fd(connection) -> int | None:
    # Per process: flock() belongs to the open file, which a forked child (a
    # gunicorn worker of a --preload master, a Celery pool process) would share
    # with its parent, and then the two would not exclude each other.
    key = (str(connection.settings_dict["NAME"]), os.getpid())
    fd = _sqlite_lock_files.get(key)
    path = file_beside_database(connection, "writer-lock") if fd is None else None
    if path is not None:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            return None  # e.g. a read-only folder: SQLite's own lock still serialises
        _sqlite_lock_files[key] = fd
    return fd


@contextmanager
def write_transaction(using: str = DEFAULT_DB_ALIAS):
    """transaction.atomic() for a short, hot write; on SQLite, writers queue
    for the write lock (see above) instead of sleeping in SQLite's busy
    handler. Inside an enclosing atomic block (which may already hold SQLite's
    lock) it is a plain savepoint: queueing there could deadlock."""
    from django.db import transaction

    connection = connections[using]
    if connection.vendor != "sqlite" or connection.in_atomic_block:
        with transaction.atomic(using=using):
            yield
        return
    with _sqlite_writer:
        fd = _sqlite_lock_fd(connection)
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            with transaction.atomic(using=using):
                yield
        finally:
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)


def _qn(connection, name: str) -> str:
    return connection.ops.quote_name(name)


def fast_cursor(connection):
    """A cursor for these statements. On PostgreSQL it binds parameters on the
    server (Django's default writes them into the SQL text on the client) and
    asks psycopg to prepare each statement once per connection, so that
    PostgreSQL stops parsing and planning it on every share and visit (planning
    the share INSERT alone cost as much as running it). DB_PREPARED_STATEMENTS=
    false turns preparing off (settings.py). Still Django's cursor wrapper:
    errors become django.db errors, and queries are logged when Django logs them."""
    if connection.vendor != "postgresql":
        return connection.cursor()
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    with connection.wrap_database_errors:
        return connection._prepare_cursor(_preparing_cursor_class()(connection.connection))  # noqa: SLF001


_PREPARING_CURSOR = None


def _preparing_cursor_class():
    global _PREPARING_CURSOR
    if _PREPARING_CURSOR is None:
        from django.db.backends.postgresql.base import ServerBindingCursor

        class PreparingCursor(ServerBindingCursor):
            def execute(self, query, params=None, *, prepare=None, binary=None):
                # psycopg ignores prepare=True while the connection's prepare_threshold is None.
                return super().execute(query, params, prepare=True, binary=binary)

            def _convert_query(self, query, params=None):
                # psycopg keeps the query it sent (which Django's query log reads)
                # only when it is not prepared: keep it always. It is the SQL with
                # $1, $2… placeholders, never the values.
                converted = super()._convert_query(query, params)
                self._query = converted
                return converted

        _PREPARING_CURSOR = PreparingCursor
    return _PREPARING_CURSOR


# For a value of exactly these types (or None), Django's get_db_prep_save()
# gives back the value itself, except that integer fields pass it through
# ops.adapt_integerfield_value() (on PostgreSQL: Int2/Int4/Int8, for server-side
# binding); anything else goes through Django's own adapter.
_STORED_AS_IS = {
    "CharField": (str,), "TextField": (str,), "SlugField": (str,), "BooleanField": (bool,),
    "ForeignKey": (int,),  # the id of an AutoField / BigAutoField target, which Django does not wrap
}
_INTEGER_FIELDS = ("IntegerField", "PositiveIntegerField", "BigIntegerField", "SmallIntegerField",
                   "PositiveSmallIntegerField", "PositiveBigIntegerField")


def _preparer(field, connection):
    """obj -> the field's value as the database adapter wants it: exactly
    field.get_db_prep_save(field.pre_save(obj, True), connection) (a test holds
    them equal), without the adapter's layers for the plain values a share and
    its event hold (a share's INSERT has some 30 parameters, and those layers
    were a fifth of its Python time)."""
    attname = field.attname
    internal = field.get_internal_type()

    def full(obj):
        return field.get_db_prep_save(field.pre_save(obj, True), connection)

    if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
        return full
    if internal in _INTEGER_FIELDS:
        adapt = connection.ops.adapt_integerfield_value

        def prepare(obj):
            value = getattr(obj, attname)
            if value is None:
                return None
            return adapt(value, internal) if type(value) is int else full(obj)

        return prepare
    if internal == "DateTimeField" and connection.vendor == "postgresql":
        # psycopg takes an aware datetime as it is.
        def prepare(obj):
            value = getattr(obj, attname)
            if value is None or (type(value) is dt.datetime and value.utcoffset() is not None):
                return value
            return full(obj)

        return prepare
    if internal == "DateTimeField" and connection.vendor == "sqlite" and connection.timezone is dt.timezone.utc:
        # SQLite's adapter stores an aware datetime as naive text in the
        # connection's zone (UTC here): for a UTC value (timezone.now()), that is
        # the value without its zone.
        def prepare(obj):
            value = getattr(obj, attname)
            if type(value) is dt.datetime and value.tzinfo is dt.timezone.utc:
                return str(value.replace(tzinfo=None))
            return full(obj)

        return prepare
    as_is = _STORED_AS_IS.get(internal)
    if as_is is None:
        return full

    def prepare(obj):
        value = getattr(obj, attname)
        return value if value is None or type(value) in as_is else full(obj)

    return prepare


def _prepare(obj: Model, fields: list, connection) -> list:
    """[field value as the database wants it, for each of `fields`]. `fields`
    is one of the lists kept in _cache (its id is part of the key)."""
    key = ("preparers", type(obj), connection.vendor, id(fields))
    preparers = _cache.get(key)
    if preparers is None:
        preparers = _cache[key] = [_preparer(f, connection) for f in fields]
    return [prepare(obj) for prepare in preparers]


def _fetch_one(connection, sql: str, params: list):
    """Run one statement; its first result row, or None."""
    with fast_cursor(connection) as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def _saved(obj: Model, pk: int, using: str) -> None:
    """Mark a row this module INSERTed as the ORM's save() would."""
    obj.pk = pk
    obj._state.adding = False
    obj._state.db = using


def _cached_sql(key: tuple, build, connection) -> str:
    """build(connection), the SQL of one statement, built once per key."""
    sql = _cache.get(key)
    if sql is None:
        sql = _cache[key] = build(connection)
    return sql


def _plain_insert(connection, model: type[Model]) -> tuple[list, str]:
    """(every concrete field but the auto primary key, `INSERT INTO <table> (…)
    VALUES (%s, …)` for them), to which callers add their RETURNING."""
    meta = model._meta
    fields = [f for f in meta.local_concrete_fields if f is not meta.pk]
    sql = "INSERT INTO {} ({}) VALUES ({})".format(
        _qn(connection, meta.db_table),
        ", ".join(_qn(connection, f.column) for f in fields),
        ", ".join(["%s"] * len(fields)),
    )
    return fields, sql


def _insert_statement(connection, model: type[Model]) -> tuple[list, str]:
    """_plain_insert(…) RETURNING the primary key, built once per model and vendor."""
    key = ("insert", model, connection.vendor)
    prepared = _cache.get(key)
    if prepared is None:
        fields, sql = _plain_insert(connection, model)
        prepared = _cache[key] = (fields, f"{sql} RETURNING {_qn(connection, model._meta.pk.column)}")
    return prepared


def insert(obj: Model, using: str = DEFAULT_DB_ALIAS) -> None:
    """INSERT one new row (all concrete fields but the auto primary key) and set obj.pk."""
    connection = connections[using]
    fields, sql = _insert_statement(connection, type(obj))
    _saved(obj, _fetch_one(connection, sql, _prepare(obj, fields, connection))[0], using)


def _columns(connection, model: type[Model], alias: str) -> tuple[str, list]:
    """`alias.col, …` for every concrete field, and each field's result converters."""
    fields = model._meta.concrete_fields
    converters = []
    for field in fields:
        col = field.get_col(alias)
        converters.append((connection.ops.get_db_converters(col) + col.get_db_converters(connection), col))
    select = ", ".join(f"{alias}.{_qn(connection, f.column)}" for f in fields)
    return select, converters


def _from_db(model: type[Model], using: str, connection, values, converters) -> Model:
    converted = []
    for value, (functions, col) in zip(values, converters):
        for function in functions:
            value = function(value, col, connection)
        converted.append(value)
    return model.from_db(using, [f.attname for f in model._meta.concrete_fields], converted)


def bucket_grants(user_id: int, bucket_name: str, using: str = DEFAULT_DB_ALIAS) -> list[tuple[Bucket, bool, int, str]]:
    """(bucket, can_share, max_expiry, prefix) for every grant the user holds on an
    enabled bucket of that name, directly or through a group: the grant check
    of share creation in one statement."""
    from django.contrib.auth import get_user_model

    from .models import Grant

    connection = connections[using]
    key = ("bucket_grants", connection.vendor)
    prepared = _cache.get(key)
    if prepared is None:
        select, converters = _columns(connection, Bucket, "b")
        memberships = get_user_model().groups.through._meta
        group_col = memberships.get_field("group").column
        user_col = memberships.get_field("user").column
        g = Grant._meta
        sql = (
            f"SELECT {select}, g.{_qn(connection, g.get_field('can_share').column)}, "
            f"g.{_qn(connection, g.get_field('max_expiry').column)}, g.{_qn(connection, g.get_field('prefix').column)} "
            f"FROM {_qn(connection, g.db_table)} g "
            f"INNER JOIN {_qn(connection, Bucket._meta.db_table)} b ON b.{_qn(connection, Bucket._meta.pk.column)} = g.{_qn(connection, g.get_field('bucket').column)} "
            f"WHERE b.{_qn(connection, 'name')} = %s AND b.{_qn(connection, 'enabled')} = %s "
            f"AND (g.{_qn(connection, g.get_field('user').column)} = %s "
            f"OR g.{_qn(connection, g.get_field('group').column)} IN ("
            f"SELECT {_qn(connection, group_col)} FROM {_qn(connection, memberships.db_table)} "
            f"WHERE {_qn(connection, user_col)} = %s))"
        )
        prepared = _cache[key] = (sql, converters, len(converters))
    sql, converters, width = prepared
    with fast_cursor(connection) as cursor:
        cursor.execute(sql, [bucket_name, True, user_id, user_id])
        rows = cursor.fetchall()
    result = []
    bucket = None
    for row in rows:
        if bucket is None:
            bucket = _from_db(Bucket, using, connection, row[:width], converters)
        can_share, max_expiry, prefix = row[width:]
        result.append((bucket, bool(can_share), int(max_expiry), prefix))
    return result


def portal_share(digest: str, using: str = DEFAULT_DB_ALIAS) -> Share | None:
    """The portal-link Share with this token digest, its bucket (or None) already
    loaded: Share.objects.select_related("bucket").get(token_digest=…, kind="portal")."""
    connection = connections[using]
    key = ("portal_share", connection.vendor)
    prepared = _cache.get(key)
    if prepared is None:
        share_select, share_converters = _columns(connection, Share, "s")
        bucket_select, bucket_converters = _columns(connection, Bucket, "b")
        s = Share._meta
        sql = (
            f"SELECT {share_select}, {bucket_select} FROM {_qn(connection, s.db_table)} s "
            f"LEFT OUTER JOIN {_qn(connection, Bucket._meta.db_table)} b "
            f"ON b.{_qn(connection, Bucket._meta.pk.column)} = s.{_qn(connection, s.get_field('bucket').column)} "
            f"WHERE s.{_qn(connection, s.get_field('token_digest').column)} = %s "
            f"AND s.{_qn(connection, s.get_field('kind').column)} = %s"
        )
        prepared = _cache[key] = (sql, share_converters, bucket_converters)
    sql, share_converters, bucket_converters = prepared
    row = _fetch_one(connection, sql, [digest, Share.Kind.PORTAL.value])  # token_digest is unique
    if row is None:
        return None
    width = len(share_converters)
    share = _from_db(Share, using, connection, row[:width], share_converters)
    bucket_values = row[width:]
    # The LEFT JOIN gives NULLs when the share's bucket was deleted (bucket_id SET NULL).
    share.bucket = _from_db(Bucket, using, connection, bucket_values, bucket_converters) if bucket_values[0] is not None else None
    return share


def _count_download_sql(connection) -> str:
    s = Share._meta

    def col(name: str) -> str:
        return _qn(connection, s.get_field(name).column)

    # SET sees the row as it was: the visit that reaches max_downloads also marks
    # the share used up (status stays as it is unless it was active).
    return (
        f"UPDATE {_qn(connection, s.db_table)} SET {col('download_count')} = {col('download_count')} + 1, "
        f"{col('status')} = CASE WHEN {col('max_downloads')} IS NOT NULL "
        f"AND {col('download_count')} + 1 >= {col('max_downloads')} AND {col('status')} = '{Share.Status.ACTIVE.value}' "
        f"THEN '{Share.Status.USED_UP.value}' ELSE {col('status')} END "
        f"WHERE {_qn(connection, s.pk.column)} = %s AND {col('revoked_at')} IS NULL AND {col('expires_at')} > %s "
        f"AND ({col('max_downloads')} IS NULL OR {col('download_count')} < {col('max_downloads')})"
    )


def count_download(share_id: int, now: dt.datetime, using: str = DEFAULT_DB_ALIAS) -> bool:
    """One conditional UPDATE (download_count + 1 while the share is not revoked,
    not expired and under its limit; status used_up when this visit reaches the
    limit): two visitors racing for the last download of a limit cannot both
    win, on any database. True if this visit counted."""
    connection = connections[using]
    sql = _cached_sql(("count_download", connection.vendor), _count_download_sql, connection)
    with fast_cursor(connection) as cursor:
        cursor.execute(sql, [share_id, connection.ops.adapt_datetimefield_value(now)])
        return cursor.rowcount == 1


# --- PostgreSQL: a write and its audit event in ONE statement -----------------------
#
# On PostgreSQL a data-modifying CTE (`WITH s AS (INSERT … RETURNING id) INSERT
# INTO shares_auditevent … SELECT … FROM s`) is a single statement, so it is
# atomic on its own: both rows commit together or neither does, without the
# BEGIN and COMMIT round trips of transaction.atomic(). SQLite has no
# data-modifying CTEs: a share and its event are two INSERTs in one transaction
# there (_sqlite_share_and_event); a visit's, links.share_link's transaction.

def one_statement(using: str = DEFAULT_DB_ALIAS) -> bool:
    """Can this database write a row and its audit event in one statement?"""
    return connections[using].vendor == "postgresql"


def _event_insert(connection, source: str, returning: str, with_share_id: bool,
                  computed: dict[str, str] | None = None, also_from: str = "") -> tuple[list, str]:
    """`INSERT INTO shares_auditevent (…) SELECT …, <source>.id, … FROM <source>
    RETURNING <returning>`: every field a parameter except share_id (the CTE's
    row id) and the fields `computed` gives an SQL expression for (over source
    and the CTEs named in also_from, e.g. "a"); with_share_id: the details get
    {"share_id": id} merged in. Returns (the fields that are parameters, the SQL)."""
    from .models import AuditEvent

    meta = AuditEvent._meta
    computed = {"share": f"{source}.id", **(computed or {})}
    fields = [f for f in meta.local_concrete_fields if f is not meta.pk]
    values = []
    for f in fields:
        if f.name in computed:
            values.append(computed[f.name])
        elif f.name == "details" and with_share_id:
            # jsonb: key order is the database's anyway; || adds the share's id.
            values.append(f"jsonb_build_object('share_id', {source}.id) || %s::jsonb")
        else:
            values.append("%s")
    sql = "INSERT INTO {} ({}) SELECT {} FROM {} RETURNING {}".format(
        _qn(connection, meta.db_table),
        ", ".join(_qn(connection, f.column) for f in fields),
        ", ".join(values),
        f"{source}, {also_from}" if also_from else source,
        returning,
    )
    return [f for f in fields if f.name not in computed], sql


def _finish_event(event: Model, event_id: int, share_id: int, using: str, with_share_id: bool) -> None:
    """The event, written, belongs to the share; with_share_id: its details name it too."""
    event.share_id = share_id
    if with_share_id:
        event.details = {"share_id": share_id, **event.details}
    _saved(event, event_id, using)


def _sqlite_event_insert(connection) -> tuple[list, str]:
    """SQLite: the event INSERT of a share, with every field a parameter and the
    details last, then `json_set(details, '$.share_id', <share id>)`. Returns
    (the fields to prepare, details last; the SQL, whose last three parameters
    are the share id, the details and the share id)."""
    from .models import AuditEvent

    key = ("sqlite_event_insert", connection.vendor)
    prepared = _cache.get(key)
    if prepared is None:
        meta = AuditEvent._meta
        own = [f for f in meta.local_concrete_fields if f is not meta.pk and f.name not in ("share", "details")]
        fields = own + [meta.get_field("details")]
        columns = [f.column for f in own] + [meta.get_field("share").column, meta.get_field("details").column]
        sql = "INSERT INTO {} ({}) VALUES ({}, %s, json_set(%s, '$.share_id', %s)) RETURNING {}".format(
            _qn(connection, meta.db_table),
            ", ".join(_qn(connection, column) for column in columns),
            ", ".join(["%s"] * len(own)),
            _qn(connection, meta.pk.column),
        )
        prepared = _cache[key] = (fields, sql)
    return prepared


def _sqlite_share_and_event(connection, using: str, sql: str, params: list, event: Model) -> tuple | None:
    """SQLite: `sql` (an INSERT of a share, RETURNING its id first) and, if it
    wrote a row, the share's audit event (share_id set, {"share_id": id} merged
    into its details), in one transaction queued for the write lock. SQLite has
    one writer at a time, so everything the event needs is prepared before the
    lock is taken. The share's returned row, or None when nothing was written."""
    event_fields, event_sql = _sqlite_event_insert(connection)
    *event_params, details = _prepare(event, event_fields, connection)
    with write_transaction(using):
        row = _fetch_one(connection, sql, params)
        if row is None:
            return None
        share_id = row[0]
        event_id = _fetch_one(connection, event_sql, [*event_params, share_id, details, share_id])[0]
    _finish_event(event, event_id, share_id, using, True)
    return row


def insert_share_with_event(share: Share, event: Model, using: str = DEFAULT_DB_ALIAS) -> None:
    """INSERT the share and its audit event (share_id set, and {"share_id": id}
    merged into its details) atomically; sets share.pk and event.pk.
    PostgreSQL: one statement. SQLite: one transaction queued for the write lock."""
    connection = connections[using]
    if not one_statement(using):
        share_fields, share_sql = _insert_statement(connection, Share)
        (share_id,) = _sqlite_share_and_event(connection, using, share_sql,
                                              _prepare(share, share_fields, connection), event)
        _saved(share, share_id, using)
        return
    key = ("insert_share_with_event", connection.vendor)
    prepared = _cache.get(key)
    if prepared is None:
        share_fields, share_sql = _plain_insert(connection, Share)
        event_meta = type(event)._meta
        event_fields, event_sql = _event_insert(
            connection, "s",
            f"{_qn(connection, event_meta.pk.column)}, {_qn(connection, event_meta.get_field('share').column)}",
            with_share_id=True)
        sql = "WITH s AS ({} RETURNING {} AS id) {}".format(
            share_sql, _qn(connection, Share._meta.pk.column), event_sql)
        prepared = _cache[key] = (share_fields, event_fields, sql)
    share_fields, event_fields, sql = prepared
    params = _prepare(share, share_fields, connection)
    params += _prepare(event, event_fields, connection)
    event_id, share_id = _fetch_one(connection, sql, params)
    _saved(share, share_id, using)
    _finish_event(event, event_id, share_id, using, True)


def count_download_with_event(share_id: int, now: dt.datetime, event: Model, using: str = DEFAULT_DB_ALIAS) -> bool:
    """PostgreSQL only: count_download() and, only if the visit counted, INSERT its
    audit event (share_id set), in one atomic statement. False: nothing written."""
    connection = connections[using]
    key = ("count_download_with_event", connection.vendor)
    prepared = _cache.get(key)
    if prepared is None:
        event_fields, event_sql = _event_insert(connection, "u", _qn(connection, type(event)._meta.pk.column),
                                                with_share_id=False)
        sql = "WITH u AS ({} RETURNING {} AS id) {}".format(
            _count_download_sql(connection), _qn(connection, Share._meta.pk.column), event_sql)
        prepared = _cache[key] = (event_fields, sql)
    event_fields, sql = prepared
    params = [share_id, connection.ops.adapt_datetimefield_value(now)]
    params += _prepare(event, event_fields, connection)
    row = _fetch_one(connection, sql, params)
    if row is None:
        return False
    _finish_event(event, row[0], share_id, using, False)
    return True


# --- Share creation: the grant check and the INSERT in one statement ---------------
#
# share_create()'s common case (a signed-in user with a grant that allows the
# share) needs no row read before it writes: the INSERT takes the bucket's id
# from the registry and is conditional on a covering grant, so that the check
# and the write are one statement (and on PostgreSQL the audit event joins it).
# When it inserts nothing, the caller falls back to the full path, which reads
# the grants to say exactly what was wrong (and records the refusal).

SIGNING_COLUMNS = ("region", "endpoint_url", "public_endpoint_url", "addressing_style", "aws_profile")


def _granted_insert_sql(connection, with_config: bool, by_token: bool = False) -> tuple[list, str]:
    """`INSERT INTO shares_share (…) SELECT …, b.id, … FROM shares_bucket b WHERE
    <enabled bucket of that name> AND EXISTS (<a grant of the user's, direct or
    through a group, with can_share, covering the key, allowing the expiry>)`.

    The grant rules are grants.make_access/best_access in SQL (a test holds them
    equal): the grant's prefix names a folder ("team-a" covers "team-a/…", never
    "team-a-secret/…"), and the longest link is the least of the grant's
    maximum, the bucket's and the portal cap. with_config: the bucket's signing
    columns must also equal the values the caller signed with. by_token: the
    user is the row of a CTE named `a` (_bearer_sql), not a parameter, and the
    share's creator (id and name) comes from it."""
    from django.contrib.auth import get_user_model

    from .models import Grant

    def q(name: str) -> str:
        return _qn(connection, name)

    meta = Share._meta
    fields = [f for f in meta.local_concrete_fields if f is not meta.pk]
    bucket_meta = Bucket._meta
    grant_meta = Grant._meta
    memberships = get_user_model().groups.through._meta
    user_id = "a.user_id" if by_token else "%s"

    def g(name: str) -> str:
        return "g." + q(grant_meta.get_field(name).column)

    least = "LEAST" if connection.vendor == "postgresql" else "MIN"  # SQLite's scalar min()
    prefix = g("prefix")
    # normalise_prefix(): "" stays "", "team-a" becomes "team-a/".
    folder = f"(CASE WHEN substr({prefix}, length({prefix}), 1) = '/' THEN {prefix} ELSE {prefix} || '/' END)"
    grant_exists = (
        f"EXISTS (SELECT 1 FROM {q(grant_meta.db_table)} g WHERE {g('bucket')} = b.{q(bucket_meta.pk.column)} "
        f"AND ({g('user')} = {user_id} OR {g('group')} IN (SELECT {q(memberships.get_field('group').column)} "
        f"FROM {q(memberships.db_table)} WHERE {q(memberships.get_field('user').column)} = {user_id})) "
        f"AND {g('can_share')} = %s "
        f"AND {least}({g('max_expiry')}, b.{q('max_expiry')}, %s) >= %s "
        f"AND ({prefix} = '' OR substr(%s, 1, length({folder})) = {folder}))"
    )
    conditions = [f"b.{q('name')} = %s", f"b.{q('enabled')} = %s"]
    if with_config:
        conditions += [f"b.{q(bucket_meta.get_field(name).column)} = %s" for name in SIGNING_COLUMNS]
    conditions.append(grant_exists)
    computed = {"bucket": f"b.{q(bucket_meta.pk.column)}"}
    if by_token:
        computed.update(created_by="a.user_id", created_by_name="a.username")
    values = [computed.get(f.name, "%s") for f in fields]
    sql = "INSERT INTO {} ({}) SELECT {} FROM {} b{} WHERE {}".format(
        q(meta.db_table),
        ", ".join(q(f.column) for f in fields),
        ", ".join(values),
        q(bucket_meta.db_table),
        ", a" if by_token else "",
        " AND ".join(conditions),
    )
    return [f for f in fields if f.name not in computed], sql


def _granted_insert_params(share: Share, own: list, connection, *, user_id: int | None, cap: int,
                           config_values: tuple[str, ...] | None) -> list:
    """The parameters of _granted_insert_sql's statement after its CTEs; user_id
    None: by_token."""
    params = _prepare(share, own, connection)
    params += [share.bucket_name, True]
    if config_values is not None:
        params += list(config_values)
    if user_id is not None:
        params += [user_id, user_id]
    params += [True, cap, share.expires_in, share.key]
    return params


def insert_share_if_granted(share: Share, event: Model, *, user_id: int, cap: int,
                            config_values: tuple[str, ...] | None = None,
                            using: str = DEFAULT_DB_ALIAS) -> bool:
    """INSERT the share (bucket id taken from the registry by share.bucket_name)
    and its audit event if, and only if, the user holds a grant that allows it:
    can_share, covering share.key, and min(grant max, bucket max, cap) ≥
    share.expires_in. config_values: the bucket's signing columns
    (SIGNING_COLUMNS order) as signed with, for direct links; the share is not
    written if the registry now says otherwise.

    PostgreSQL: one statement (share + event, details get share_id). SQLite:
    two statements in one transaction. False: nothing was written; the caller
    must take the full path to say why (or to create it after all, if the
    registry changed in between)."""
    connection = connections[using]
    with_config = config_values is not None
    key = ("insert_share_if_granted", connection.vendor, with_config)
    prepared = _cache.get(key)
    if prepared is None:
        share_fields, insert_sql = _granted_insert_sql(connection, with_config)
        if one_statement(using):
            event_meta = type(event)._meta
            event_fields, event_sql = _event_insert(
                connection, "s",
                f"{_qn(connection, event_meta.pk.column)}, {_qn(connection, event_meta.get_field('share').column)}, "
                f"(SELECT bucket_id FROM s)", with_share_id=True)
            sql = "WITH s AS ({} RETURNING {} AS id, {} AS bucket_id) {}".format(
                insert_sql, _qn(connection, Share._meta.pk.column),
                _qn(connection, Share._meta.get_field("bucket").column), event_sql)
        else:
            event_fields = None
            sql = "{} RETURNING {}, {}".format(insert_sql, _qn(connection, Share._meta.pk.column),
                                              _qn(connection, Share._meta.get_field("bucket").column))
        prepared = _cache[key] = (share_fields, event_fields, sql)
    share_fields, event_fields, sql = prepared
    params = _granted_insert_params(share, share_fields, connection, user_id=user_id, cap=cap,
                                    config_values=config_values)
    if event_fields is not None:
        params += _prepare(event, event_fields, connection)
        row = _fetch_one(connection, sql, params)
        if row is None:
            return False
        event_id, share_id, bucket_id = row
        _finish_event(event, event_id, share_id, using, True)
    else:
        row = _sqlite_share_and_event(connection, using, sql, params, event)
        if row is None:
            return False
        share_id, bucket_id = row
    _saved(share, share_id, using)
    share.bucket_id = bucket_id
    return True


# --- A share made with an API token: the token lookup joins the statement ------------
#
# An API request names its user by a token, which the full path looks up (an ORM
# query, most of what a trivial API call costs) before the view runs. For a
# share, the lookup can be one more join of the statement above: the user is
# whoever holds the token, if active and not a superuser (superusers take the
# full path, which lets them share without a grant). When the statement writes
# nothing (no such token, an inactive user, no grant…), the caller
# authenticates the token the usual way and takes the full path, which says why.

class BearerUse(NamedTuple):
    """Who a token named, as the statement found it."""

    user_id: int
    username: str
    token_id: int
    stale: bool  # the token's last_used_at is unset, or at or before the `stale_before` given


def _bearer_sql(connection) -> str:
    """SELECT user_id, username, token_id, stale of the token with that digest,
    if its user is active and not a superuser. Parameters: stale_before,
    digest, True, False."""
    from django.contrib.auth import get_user_model

    from .models import ApiToken

    def q(name: str) -> str:
        return _qn(connection, name)

    user_meta = get_user_model()._meta
    token_meta = ApiToken._meta

    def u(name: str) -> str:
        return "u." + q(user_meta.get_field(name).column)

    def t(name: str) -> str:
        return "t." + q(token_meta.get_field(name).column)

    return (
        f"SELECT {u(user_meta.pk.name)} AS user_id, {u(get_user_model().USERNAME_FIELD)} AS username, "
        f"{t('id')} AS token_id, ({t('last_used_at')} IS NULL OR {t('last_used_at')} <= %s) AS stale "
        f"FROM {q(token_meta.db_table)} t INNER JOIN {q(user_meta.db_table)} u "
        f"ON {u(user_meta.pk.name)} = {t('user')} "
        f"WHERE {t('digest')} = %s AND {u('is_active')} = %s AND {u('is_superuser')} = %s"
    )


def insert_share_by_token(share: Share, event: Model, *, token_digest: str, stale_before: dt.datetime, cap: int,
                          config_values: tuple[str, ...] | None = None,
                          using: str = DEFAULT_DB_ALIAS) -> BearerUse | None:
    """insert_share_if_granted() for the user who holds the API token with this
    digest (active, not a superuser): the share's creator and the event's actor
    are that user, set on `share` and `event` here. PostgreSQL: one statement,
    token lookup included. SQLite: the lookup, then insert_share_if_granted().
    None: nothing was written."""
    connection = connections[using]
    lookup_params = [connection.ops.adapt_datetimefield_value(stale_before), token_digest, True, False]
    if not one_statement(using):
        row = _fetch_one(connection, _cached_sql(("bearer", connection.vendor), _bearer_sql, connection),
                         lookup_params)
        if row is None:
            return None
        found = _made_by(share, event, row)
        written = insert_share_if_granted(share, event, user_id=found.user_id, cap=cap, config_values=config_values,
                                          using=using)
        return found if written else None
    with_config = config_values is not None
    key = ("insert_share_by_token", connection.vendor, with_config)
    prepared = _cache.get(key)
    if prepared is None:
        share_fields, insert_sql = _granted_insert_sql(connection, with_config, by_token=True)
        event_meta = type(event)._meta
        event_fields, event_sql = _event_insert(
            connection, "s", _qn(connection, event_meta.pk.column), with_share_id=True,
            computed={"actor": "a.user_id", "actor_name": "a.username"}, also_from="a")
        sql = ("WITH a AS ({}), s AS ({} RETURNING {} AS id, {} AS bucket_id), e AS ({}) "
               "SELECT e.id, s.id, s.bucket_id, a.user_id, a.username, a.token_id, a.stale FROM e, s, a").format(
            _bearer_sql(connection), insert_sql, _qn(connection, Share._meta.pk.column),
            _qn(connection, Share._meta.get_field("bucket").column), event_sql)
        prepared = _cache[key] = (share_fields, event_fields, sql)
    share_fields, event_fields, sql = prepared
    params = lookup_params
    params += _granted_insert_params(share, share_fields, connection, user_id=None, cap=cap,
                                     config_values=config_values)
    params += _prepare(event, event_fields, connection)
    row = _fetch_one(connection, sql, params)
    if row is None:
        return None
    event_id, share_id, bucket_id, *bearer = row
    found = _made_by(share, event, bearer)
    _saved(share, share_id, using)
    share.bucket_id = bucket_id
    _finish_event(event, event_id, share_id, using, True)
    return found


def _made_by(share: Share, event: Model, bearer) -> BearerUse:
    """The token's user (bearer: a _bearer_sql row) becomes the share's creator
    and the event's actor."""
    user_id, username, token_id, stale = bearer
    share.created_by_id, share.created_by_name = user_id, username[:150]
    event.actor_id, event.actor_name = user_id, username[:150]
    return BearerUse(user_id, username, token_id, bool(stale))
