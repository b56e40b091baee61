"""The portal-link rate limit's counter: visits per client IP in a fixed
one-minute window, counted in ONE round trip per visit (shares/links.py decides
what to do with the count).

- Redis (the default cache is Django's RedisCache, i.e. CACHE_URL=redis://…):
  one EVALSHA of a tiny Lua script (INCR, and EXPIRE on the window's first
  visit), on one long-lived client per process whose connection pool is
  thread-safe. Django's own RedisCache.incr costs two round trips (EXISTS, then
  INCRBY) and builds a new redis.Redis object on every call. Keys are made by the
  cache's own key function (KEY_PREFIX, VERSION), in the same format the cache
  counter used: ":1:s-link-rate:<ip>:<minute>".
- Anything else (the embedded default, the DatabaseCache): the portal's own
  table, LinkRateCounter, one `INSERT … ON CONFLICT … DO UPDATE … RETURNING`
  per visit (SQLite ≥ 3.35, PostgreSQL), run inside the visit's write
  transaction. The DatabaseCache took a SELECT, an UPDATE or INSERT, and a
  cull check per call. tidy_shares deletes finished windows (prune_counters).
"""
from __future__ import annotations

import hashlib
import logging
import threading
import time
from typing import Any

from django.conf import settings
from django.core.cache.backends.base import get_key_func
from django.core.cache.backends.redis import RedisCache
from django.db import DEFAULT_DB_ALIAS, connections
from django.utils.module_loading import import_string

from . import fastsql
from .models import LinkRateCounter

log = logging.getLogger(__name__)

WINDOW_SECONDS = 60
# A Redis key outlives its window a little: app servers' clocks differ slightly.
REDIS_KEY_TTL = 90
# Unless the cache's OPTIONS say otherwise: a stalled Redis costs a visit at most
# ~1 s (one retry) before the limiter gives up and lets it through.
REDIS_SOCKET_TIMEOUT = 0.5
CLIENT_MAX_LENGTH = LinkRateCounter._meta.get_field("client").max_length

# Atomic, and TTL-setting on every Redis version (EXPIRE … NX needs Redis 7).
_INCR_SCRIPT = """
local visits = redis.call('INCR', KEYS[1])
if visits == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return visits
"""


def current_minute(now: float | None = None) -> int:
    return int((time.time() if now is None else now) // WINDOW_SECONDS)


def client_key(ip: str | None) -> str:
    """The counter's name for a client: its IP. A forwarded value longer than any IP
    (only with TRUST_X_FORWARDED_FOR) is digested to fit the column."""
    client = ip or "unknown"
    if len(client) > CLIENT_MAX_LENGTH:
        client = hashlib.sha256(client.encode("utf-8", "surrogatepass")).hexdigest()
    return client


class _DatabaseCounter:
    in_transaction = True  # one commit (and one SQLite write lock) with the visit's own writes

    def __init__(self) -> None:
        self._sql: dict[str, str] = {}

    def _statement(self, connection) -> str:
        sql = self._sql.get(connection.vendor)
        if sql is None:
            meta = LinkRateCounter._meta
            qn = connection.ops.quote_name
            table = qn(meta.db_table)
            minute, client, visits = (qn(meta.get_field(name).column) for name in ("minute", "client", "visits"))
            sql = self._sql[connection.vendor] = (
                f"INSERT INTO {table} ({minute}, {client}, {visits}) VALUES (%s, %s, 1) "
                f"ON CONFLICT ({minute}, {client}) DO UPDATE SET {visits} = {table}.{visits} + 1 "
                f"RETURNING {visits}"
            )
        return sql

    def hit(self, client: str, minute: int) -> int:
        # No fail-open here: the counter lives in the database the visit needs
        # anyway, and on PostgreSQL a failed statement aborts the transaction it is in.
        connection = connections[DEFAULT_DB_ALIAS]
        with fastsql.fast_cursor(connection) as cursor:  # prepared once per connection on PostgreSQL
            cursor.execute(self._statement(connection), [minute, client])
            return cursor.fetchone()[0]


class _RedisCounter:
    in_transaction = False  # counted before the visit's transaction, outside it

    def __init__(self, config: dict[str, Any]) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        location = config["LOCATION"]
        servers = location.split(",") if isinstance(location, str) else list(location)
        # The same pool options as Django's RedisCache; writes go to the first server.
        options = dict(config.get("OPTIONS") or {})
        options.pop("serializer", None)
        pool_class = options.pop("pool_class", None) or redis.ConnectionPool
        if isinstance(pool_class, str):
            pool_class = import_string(pool_class)
        if isinstance(options.get("parser_class"), str):
            options["parser_class"] = import_string(options["parser_class"])
        options.setdefault("socket_connect_timeout", REDIS_SOCKET_TIMEOUT)
        options.setdefault("socket_timeout", REDIS_SOCKET_TIMEOUT)
        # One immediate retry (a pooled connection the server closed), no backoff sleeps.
        options.setdefault("retry", Retry(NoBackoff(), 1))
        self.client = redis.Redis(connection_pool=pool_class.from_url(servers[0].strip(), **options))
        self._script = self.client.register_script(_INCR_SCRIPT)
        key_func = get_key_func(config.get("KEY_FUNCTION"))
        prefix, version = config.get("KEY_PREFIX", ""), config.get("VERSION", 1)
        self.make_key = lambda key: key_func(key, prefix, version)

    def hit(self, client: str, minute: int) -> int:
        return int(self._script(keys=[self.make_key(f"s-link-rate:{client}:{minute}")], args=[REDIS_KEY_TTL]))


_database_counter = _DatabaseCounter()
# id(CACHES["default"]) -> (that dict, its counter): one Redis client per process
# and configuration (override_settings in tests gives a new dict).
_counters: dict[int, tuple[dict, _DatabaseCounter | _RedisCounter]] = {}
_lock = threading.Lock()


def _counter() -> _DatabaseCounter | _RedisCounter:
    config = settings.CACHES["default"]
    entry = _counters.get(id(config))
    if entry is None or entry[0] is not config:
        with _lock:
            entry = _counters.get(id(config))
            if entry is None or entry[0] is not config:
                backend = import_string(config["BACKEND"])
                counter = _RedisCounter(config) if issubclass(backend, RedisCache) else _database_counter
                entry = _counters[id(config)] = (config, counter)
    return entry[1]


def counts_in_database() -> bool:
    """True when hit() writes to the database: call it inside the visit's transaction."""
    return _counter().in_transaction


def hit(ip: str | None, *, now: float | None = None) -> int | None:
    """Count one visit from this client in the current window; the visits counted
    so far in it (this one included). None when Redis cannot be reached: the caller
    does not limit (a Redis outage must not take every shared link down with it)."""
    counter = _counter()
    if counter.in_transaction:
        return counter.hit(client_key(ip), current_minute(now))
    try:
        return counter.hit(client_key(ip), current_minute(now))
    except Exception:  # noqa: BLE001 – any Redis failure (down, timeout, auth, OOM)
        log.exception("portal link: rate-limit counter (Redis) unavailable; not limiting")
        return None


def prune_counters(*, now: float | None = None, dry_run: bool = False, batch_minutes: int = 60) -> int:
    """Delete database counters of finished windows (the current and the previous
    minute stay, for clock skew between servers); the number deleted, or that
    would be. Batches of `batch_minutes` windows, each its own short statement,
    so a backlog never holds SQLite's write lock for long. Redis keys expire on their own."""
    cutoff = current_minute(now) - 1
    old = LinkRateCounter.objects.filter(minute__lt=cutoff)
    if dry_run:
        return old.count()
    deleted = 0
    while True:
        first = old.order_by("minute").values_list("minute", flat=True).first()
        if first is None:
            return deleted
        count, _ = LinkRateCounter.objects.filter(minute__lt=min(first + batch_minutes, cutoff)).delete()
        deleted += count
