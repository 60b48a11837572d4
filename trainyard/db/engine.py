"""Database engines of the job store: one per URL per process, SQLite set up for several processes.

SQLite (the default) is shared by the CLI, the workers and the dashboard, each a separate process.
With a plain deferred ``BEGIN``, read-then-write transactions of several processes fail with
"database is locked" (measured on the project's machine: 4 processes x 100 such transactions, 254
of 400 failed; none with ``BEGIN IMMEDIATE``); so every write transaction starts with ``BEGIN IMMEDIATE`` (the
writer waits up to the busy timeout for the lock instead of failing on upgrade), reads use a
deferred ``BEGIN`` (WAL lets them run next to a writer). PostgreSQL needs none of that.

The schema is created and upgraded by the alembic migrations shipped in ``migrations/``, run
programmatically on first open. Several processes opening a fresh database at once is safe: the
upgrade runs under ``BEGIN IMMEDIATE`` on SQLite and a transaction-scoped advisory lock on
PostgreSQL, and alembic re-reads the schema version once it holds the lock.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from trainyard import defaults
from trainyard.config import redact_url
from trainyard.errors import StoreError, StoreUnavailable

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

#: Key of the PostgreSQL advisory lock held while the schema is upgraded ("trainyrd" in ASCII).
_PG_MIGRATION_LOCK = 0x747261696E797264

_BEGIN_OPTION = "trainyard_begin"

#: The newest migration in ``migrations/versions`` (a test keeps the two in step). Knowing it
#: without importing alembic keeps the common case, an up-to-date database, cheap to open.
SCHEMA_REVISION = "0005"


@dataclass(frozen=True)
class Engines:
    """The two faces of one database: ``read`` (deferred transactions) and ``write`` (immediate ones).

    On PostgreSQL both are the same engine; on SQLite ``write`` shares ``read``'s pool and only
    changes the ``BEGIN`` it emits.
    """

    url: str
    read: Engine
    write: Engine

    @property
    def name(self) -> str:
        """The URL with its password hidden: what error messages show."""
        return redact_url(self.url)

    @property
    def dialect(self) -> str:
        return self.read.dialect.name


_engines: dict[str, Engines] = {}
_schema_ready: set[str] = set()
_lock = threading.Lock()


def engines_for(url: str) -> Engines:
    """The process-wide engines for ``url`` (created on first use)."""
    with _lock:
        found = _engines.get(url)
        if found is None:
            found = _engines[url] = _create(url)
        return found


def dispose_all() -> None:
    """Close every pooled connection of this process (tests, and a clean shutdown)."""
    with _lock:
        for engines in _engines.values():
            engines.read.dispose()
        _engines.clear()
        _schema_ready.clear()


def _after_fork_in_child() -> None:
    # A forked child (Celery prefork) must not reuse the parent's connections: drop them from the
    # pool without closing them, which would close the parent's sockets/files too.
    for engines in _engines.values():
        engines.read.dispose(close=False)


os.register_at_fork(after_in_child=_after_fork_in_child)


def _create(url: str) -> Engines:
    try:
        parsed = sa.engine.make_url(url)
    except ArgumentError as exc:
        raise StoreError(f"job store URL {redact_url(url)!r} cannot be parsed: {exc}") from exc
    try:
        if parsed.get_backend_name() == "sqlite":
            return _create_sqlite(url, parsed)
        connect_args: dict[str, Any] = {}
        if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
            connect_args["connect_timeout"] = defaults.DB_CONNECT_TIMEOUT_SECONDS  # an unroutable host fails fast
        engine = sa.create_engine(parsed, pool_pre_ping=True, connect_args=connect_args)
    except NoSuchModuleError as exc:
        raise StoreError(
            f"job store {redact_url(url)}: unsupported database {parsed.drivername!r} "
            "(use sqlite:///path or postgresql+psycopg://...)"
        ) from exc
    return Engines(url, engine, engine)


def _create_sqlite(url: str, parsed: sa.engine.URL) -> Engines:
    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file::memory:"):
        raise StoreError(f"job store {url}: an in-memory SQLite database cannot be shared; give a file path")
    try:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"cannot reach the job store at {url}: cannot create its folder ({exc.strerror or exc})"
        ) from exc
    busy = defaults.SQLITE_BUSY_TIMEOUT_SECONDS
    engine = sa.create_engine(parsed, connect_args={"timeout": busy, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        # pysqlite would emit its own deferred BEGIN lazily; take transactions over (see "begin").
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy * 1000)}")
            cursor.execute("PRAGMA foreign_keys = ON")
            enable_wal(cursor, busy)
            cursor.execute("PRAGMA synchronous = NORMAL")  # durable enough in WAL mode, much faster
            cursor.execute(f"PRAGMA cache_size = -{int(defaults.SQLITE_CACHE_KIB)}")  # negative: KiB, not pages
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        connection.exec_driver_sql(connection.get_execution_options().get(_BEGIN_OPTION, "BEGIN"))

    return Engines(url, engine, engine.execution_options(**{_BEGIN_OPTION: "BEGIN IMMEDIATE"}))


def enable_wal(cursor: sqlite3.Cursor, busy: float) -> None:
    """Put the SQLite file behind ``cursor`` in WAL journal mode, waiting up to ``busy`` seconds.

    Switching a fresh file to WAL needs a moment of exclusive access, and SQLite answers
    SQLITE_BUSY at once there, without calling its busy handler: when several processes open the
    same fresh file together (the job store, or the embedded broker that ``trainyard run`` and its
    worker open at the same moment), one of them sees "database is locked" despite the timeout."""
    deadline = time.monotonic() + busy
    while True:
        try:
            mode = cursor.execute("PRAGMA journal_mode = WAL").fetchone()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
            continue
        if mode and str(mode[0]).lower() == "wal":
            return
        raise sqlite3.OperationalError(f"cannot switch to WAL journal mode (got {mode!r}); is the file on NFS?")


def _alembic_config(connection: sa.Connection) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The schema revision this version of trainyard expects."""
    from alembic.script import ScriptDirectory

    config = _alembic_config(None)  # type: ignore[arg-type]
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None  # the package ships at least one migration
    return head


def current_revision(engines: Engines) -> str | None:
    """The schema revision the database is at (None for an empty database)."""
    with engines.read.connect() as connection:
        if not sa.inspect(connection).has_table("alembic_version"):
            return None
        return connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def ensure_schema(engines: Engines) -> None:
    """Create or upgrade the schema to this version's head, once per database per process."""
    if engines.url in _schema_ready:
        return
    current = current_revision(engines)
    if current != SCHEMA_REVISION:
        from alembic import command
        from alembic.script import ScriptDirectory

        head = head_revision()
        script = ScriptDirectory.from_config(_alembic_config(None))  # type: ignore[arg-type]
        if current is not None and current not in {rev.revision for rev in script.walk_revisions()}:
            raise StoreError(
                f"job store {engines.name} has schema revision {current!r}, which this version of "
                f"trainyard does not know (it expects {head!r}); upgrade trainyard"
            )
        with engines.write.begin() as connection:
            if engines.dialect == "postgresql":
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
            command.upgrade(_alembic_config(connection), "head")
    _schema_ready.add(engines.url)


def translate(exc: SQLAlchemyError, name: str) -> StoreError:
    """One clear line for a database error, naming the (redacted) database.

    A refused or dropped connection (and SQLite's lock held past the busy timeout) is a
    :class:`StoreUnavailable`: the same line, but worth trying again.
    """
    original = getattr(exc, "orig", None)
    detail = str(original if original is not None else exc).strip().splitlines()
    text = detail[0] if detail else type(exc).__name__
    lowered = text.lower()
    unavailable = isinstance(exc, sa.exc.OperationalError) or (
        isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated
    )
    kind = StoreUnavailable if unavailable else StoreError
    if isinstance(exc, sa.exc.OperationalError) and any(
        marker in lowered
        for marker in (
            "connection refused",
            "could not connect",
            "connection failed",
            "unable to open",
            "timeout expired",
        )
    ):
        return kind(f"cannot reach the job store at {name}: {text}")
    return kind(f"job store {name}: {text}")
