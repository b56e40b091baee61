"""A database of a test's own that a subprocess (a Celery worker, a script with
threads) can share through real connections: a SQLite file, or a fresh
PostgreSQL database when the suite runs on PostgreSQL. Drop it when done."""
from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

from django.db import connection


class SeparateDatabase:
    def __init__(self, folder: Path, name: str):
        self.vendor = connection.vendor
        if self.vendor == "postgresql":
            import psycopg

            settings_dict = connection.settings_dict
            self.name = f"{name}_{uuid.uuid4().hex[:10]}"
            self.admin = dict(host=settings_dict["HOST"] or "127.0.0.1", port=settings_dict["PORT"] or 5432,
                              user=settings_dict["USER"], password=settings_dict["PASSWORD"] or None)
            with psycopg.connect(dbname="postgres", autocommit=True, **self.admin) as conn:
                conn.execute(f'CREATE DATABASE "{self.name}"')
            auth = settings_dict["USER"] + (f":{settings_dict['PASSWORD']}" if settings_dict["PASSWORD"] else "")
            self.url = f"postgres://{auth}@{self.admin['host']}:{self.admin['port']}/{self.name}"
        else:
            self.path = folder / f"{name}.sqlite3"
            self.url = f"sqlite:///{self.path}"

    def scalar(self, sql: str) -> int:
        if self.vendor == "postgresql":
            import psycopg

            with psycopg.connect(dbname=self.name, autocommit=True, **self.admin) as conn:
                return conn.execute(sql).fetchone()[0]
        with sqlite3.connect(self.path, timeout=30) as conn:
            return conn.execute(sql).fetchone()[0]

    def drop(self) -> None:
        if self.vendor == "postgresql":
            import psycopg

            with psycopg.connect(dbname="postgres", autocommit=True, **self.admin) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
