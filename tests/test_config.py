"""Settings come from the environment mapping they are given, and passwords never leave redacted."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainyard.config import Settings, redact_url
from trainyard.errors import TrainyardError
from trainyard.queue.transport import is_embedded


def test_defaults_live_under_the_home() -> None:
    s = Settings.from_env({"TRAINYARD_HOME": "/srv/ty"})
    assert s.db_url == "sqlite:////srv/ty/trainyard.sqlite"
    assert s.broker_url == "sqla+sqlite:////srv/ty/broker.sqlite"
    assert is_embedded(s.broker_url)
    assert s.artifact_root == Path("/srv/ty/artifacts")


def test_numbers_are_read_from_the_given_mapping() -> None:
    env = {
        "TRAINYARD_HOME": "/srv/ty",
        "TRAINYARD_MAX_ATTEMPTS": "2",
        "TRAINYARD_LEASE_SECONDS": "8",
        "TRAINYARD_RECONCILE_SECONDS": "1.5",
    }
    s = Settings.from_env(env)
    assert (s.max_attempts, s.lease_seconds, s.reconcile_seconds) == (2, 8.0, 1.5)
    assert s.heartbeat_seconds == 2.0  # a quarter of the lease when not given


def test_a_bad_number_names_the_variable() -> None:
    with pytest.raises(TrainyardError, match="TRAINYARD_LEASE_SECONDS: expected a number, received 'soon'"):
        Settings.from_env({"TRAINYARD_HOME": "/srv/ty", "TRAINYARD_LEASE_SECONDS": "soon"})


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@queue:6379/0", "redis://:***@queue:6379/0"),
        ("rediss://user:s3cret@queue/1", "rediss://user:***@queue/1"),
        ("postgresql+psycopg://ty:pw@db:5432/ty", "postgresql+psycopg://ty:***@db:5432/ty"),
        ("redis://queue:6379/0", "redis://queue:6379/0"),
    ],
)
def test_redact_url_hides_only_the_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_backup_interval_is_configurable() -> None:
    assert Settings.from_env({"TRAINYARD_HOME": "/srv/ty"}).backup_seconds == 1.0
    assert Settings.from_env({"TRAINYARD_HOME": "/srv/ty", "TRAINYARD_BACKUP_SECONDS": "0"}).backup_seconds == 0.0
