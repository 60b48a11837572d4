"""Shared fixtures: an isolated TRAINYARD_HOME per test and real servers (skip locally, fail in CI)."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

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


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh TRAINYARD_HOME; every trainyard file of the test goes there."""
    path = tmp_path / "home"
    path.mkdir()
    monkeypatch.setenv("TRAINYARD_HOME", str(path))
    for var in ("TRAINYARD_DB_URL", "TRAINYARD_BROKER_URL", "TRAINYARD_ARTIFACT_ROOT", "TRAINYARD_DATA_ROOTS"):
        monkeypatch.delenv(var, raising=False)
    return path


@pytest.fixture
def pg_url() -> str:
    """URL of a fresh, empty PostgreSQL database (dropped after the test)."""
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
def redis_url() -> str:
    """URL of a Redis database number reserved for the test, flushed before and after."""
    require_server(REDIS_URL, "Redis")
    import redis

    # A database number of this test run's own (1-15, by process id), so that two test runs on one
    # machine (a developer's and CI's, say) do not flush each other's messages.
    db = 1 + os.getpid() % 15
    url = f"{REDIS_URL.rstrip('/')}/{db}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()


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
