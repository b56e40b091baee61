"""Precompiled SQL for the hottest statements of sharing (issue 4's benchmark).

Creating a share and visiting a portal link each run a few small statements;
through the ORM most of their cost is Django compiling the query (0.3–0.8 ms
each), not the database (~0.1 ms). These helpers build each statement's SQL
once per database vendor and reuse it, while still using Django's own field
adapters (get_db_prep_save) and result converters (get_db_converters), so
values read and written are exactly what the ORM would read and write, on
SQLite and on PostgreSQL. Only the statements on those two paths live here;
everything else stays ORM.

insert() skips the pre_save/post_save signals: no receiver listens for the
models written here (Share, AuditEvent; signals.AUDITED_MODELS is Bucket and
Grant), and the audit log is written explicitly by the callers.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Model

from .models import Bucket, Share

_cache: dict[tuple, Any] = {}


def _qn(connection, name: str) -> str:
    return connection.ops.quote_name(name)


def insert(obj: Model, using: str = DEFAULT_DB_ALIAS) -> None:
    """INSERT one new row (all concrete fields but the auto primary key) and set obj.pk."""
    connection = connections[using]
    meta = obj._meta
    key = ("insert", type(obj), connection.vendor)
    prepared = _cache.get(key)
    if prepared is None:
        fields = [f for f in meta.local_concrete_fields if f is not meta.pk]
        sql = "INSERT INTO {} ({}) VALUES ({}) RETURNING {}".format(
            _qn(connection, meta.db_table),
            ", ".join(_qn(connection, f.column) for f in fields),
            ", ".join(["%s"] * len(fields)),
            _qn(connection, meta.pk.column),
        )
        prepared = _cache[key] = (fields, sql)
    fields, sql = prepared
    params = [f.get_db_prep_save(f.pre_save(obj, True), connection) for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        obj.pk = cursor.fetchone()[0]
    obj._state.adding = False
    obj._state.db = using


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
    with connection.cursor() as cursor:
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
    with connection.cursor() as cursor:
        cursor.execute(sql, [digest, Share.Kind.PORTAL.value])
        row = cursor.fetchone()  # token_digest is unique: one row or none
    if row is None:
        return None
    width = len(share_converters)
    share = _from_db(Share, using, connection, row[:width], share_converters)
    bucket_values = row[width:]
    # The LEFT JOIN gives NULLs when the share's bucket was deleted (bucket_id SET NULL).
    share.bucket = _from_db(Bucket, using, connection, bucket_values, bucket_converters) if bucket_values[0] is not None else None
    return share


def count_download(share_id: int, now: dt.datetime, using: str = DEFAULT_DB_ALIAS) -> bool:
    """One conditional UPDATE (download_count + 1 while the share is not revoked,
    not expired and under its limit): two visitors racing for the last download
    of a limit cannot both win, on any database. True if this visit counted."""
    connection = connections[using]
    key = ("count_download", connection.vendor)
    sql = _cache.get(key)
    if sql is None:
        s = Share._meta

        def col(name: str) -> str:
            return _qn(connection, s.get_field(name).column)

        sql = _cache[key] = (
            f"UPDATE {_qn(connection, s.db_table)} SET {col('download_count')} = {col('download_count')} + 1 "
            f"WHERE {_qn(connection, s.pk.column)} = %s AND {col('revoked_at')} IS NULL AND {col('expires_at')} > %s "
            f"AND ({col('max_downloads')} IS NULL OR {col('download_count')} < {col('max_downloads')})"
        )
    with connection.cursor() as cursor:
        cursor.execute(sql, [share_id, connection.ops.adapt_datetimefield_value(now)])
        return cursor.rowcount == 1
