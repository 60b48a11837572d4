"""Shared fixtures: an isolated TRAINYARD_HOME per test and real servers (skip locally, fail in CI)."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

#: The worker fixtures (``env``, ``start_worker``) and helpers (``FAST``, ``write_spec``), for every folder.
pytest_plugins = ["worker_fixtures"]

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
PG_URL = os.environ.get("TRAINYARD_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TRAINYARD_TEST_REDIS_URL", "redis://127.0.0.1:6379")


def _reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), timeout=1):
            return True
    except OSError:
        return False


def require_server(url: str, what: str) -> None:
    """Skip when the server is down on a laptop; fail in CI, where it must be there."""
    if not _reachable(url):
        message = f"{what} not reachable at {url}"
        if IN_CI:
            pytest.fail(message + " (CI=true: servers are required)")
        pytest.skip(message)


def require_shared(path: Path) -> Path:
    """``path`` (a file under ``../shared``, beside the repository) if it is there; else skip on a
    laptop, and fail in CI, where ``../shared`` must be there (as :func:`require_server` does)."""
    if not path.exists():
        message = f"{path} not found: this test needs {SHARED} beside the repository"
        if IN_CI:
            pytest.fail(message + " (CI=true: ../shared is required)")
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def california_csv() -> Path:
    """The California housing table of ``../shared/datasets`` (20,640 rows, some values missing)."""
    return require_shared(SHARED / "datasets" / "california_housing.csv")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh TRAINYARD_HOME; every trainyard file of the test goes there."""
    path = tmp_path / "home"
    path.mkdir()
    monkeypatch.setenv("TRAINYARD_HOME", str(path))
    for var in ("TRAINYARD_DB_URL", "TRAINYARD_BROKER_URL", "TRAINYARD_ARTIFACT_ROOT", "TRAINYARD_DATA_ROOTS"):
        monkeypatch.delenv(var, raising=False)
    return path


@contextmanager
def fresh_pg_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database while the block runs (dropped after it)."""
    require_server(PG_URL, "PostgreSQL")
    import sqlalchemy as sa

    name = f"trainyard_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = PG_URL.rsplit("/", 1)[0] + "/" + name
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """URL of a fresh, empty PostgreSQL database (dropped after the test)."""
    with fresh_pg_database() as url:
        yield url


@pytest.fixture(scope="module")
def module_pg_url() -> Iterator[str]:
    """URL of a fresh, empty PostgreSQL database shared by the tests of one module."""
    with fresh_pg_database() as url:
        yield url


#: Seconds a test run's claim on a Redis database number lasts if the run dies without releasing it.
_REDIS_CLAIM_SECONDS = 3600


@pytest.fixture(scope="session")
def _redis_db() -> Iterator[int]:
    """A Redis database number (1-15) that this test run alone uses.

    Several test runs share the machine's Redis (a developer's, CI's, other sessions'); each claims a
    free database number with ``SET NX`` in database 0, so that no run flushes another's messages.
    """
    require_server(REDIS_URL, "Redis")
    import redis

    admin = redis.Redis.from_url(f"{REDIS_URL.rstrip('/')}/0")
    token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    start = os.getpid() % 15
    for offset in range(15):
        db = 1 + (start + offset) % 15
        if admin.set(f"trainyard-tests:db:{db}", token, nx=True, ex=_REDIS_CLAIM_SECONDS):
            break
    else:
        pytest.fail("every Redis database 1-15 is claimed by another trainyard test run")
    try:
        yield db
    finally:
        if admin.get(f"trainyard-tests:db:{db}") == token.encode():
            admin.delete(f"trainyard-tests:db:{db}")
        admin.close()


@contextmanager
def _flushed_redis(db: int) -> Iterator[str]:
    import redis

    url = f"{REDIS_URL.rstrip('/')}/{db}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()


@pytest.fixture
def redis_url(_redis_db: int) -> Iterator[str]:
    """URL of a Redis database number reserved for this test run, flushed before and after the test."""
    with _flushed_redis(_redis_db) as url:
        yield url


@pytest.fixture(scope="module")
def module_redis_url(_redis_db: int) -> Iterator[str]:
    """The same database, flushed before and after the tests of one module (not between them)."""
    with _flushed_redis(_redis_db) as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of a fresh job store, once per backend: a SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    else:
        url = request.getfixturevalue("pg_url")
    yield url
    from trainyard.db.engine import dispose_all

    dispose_all()  # before pg_url drops the database under our pooled connections
