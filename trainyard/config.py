"""Where trainyard keeps its files and which servers it talks to, read from the environment.

=============================  ======================================================  ==========================
variable                       meaning                                                 default
=============================  ======================================================  ==========================
``TRAINYARD_HOME``             folder holding every file trainyard writes               ``~/.local/share/trainyard``
``TRAINYARD_DB_URL``           SQLAlchemy URL of the job store                          SQLite file in the home
``TRAINYARD_BROKER_URL``       Celery broker (``redis://``, ``rediss://``...)           embedded SQLite broker
``TRAINYARD_ARTIFACT_ROOT``    where models and training backups are written           ``$TRAINYARD_HOME/artifacts``
``TRAINYARD_DATA_ROOTS``       ``os.pathsep``-separated folders workers may read data   the submitter's working dir
``TRAINYARD_MAX_ATTEMPTS``     starts of a job before it ends ``failed``                3
``TRAINYARD_LEASE_SECONDS``    lease length of a claimed job                            60
``TRAINYARD_BACKUP_SECONDS``   least seconds between two backups (0: every epoch)       1
``TRAINYARD_STORE_RETRY_SECONDS``  a worker's retries of a store write, then it stops    20
=============================  ======================================================  ==========================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from trainyard import defaults


def _default_home() -> Path:
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "trainyard"


def _float_env(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        from trainyard.errors import TrainyardError

        raise TrainyardError(f"{name}: expected a number, received {raw!r}") from None
    return value


@dataclass(frozen=True)
class Settings:
    """The resolved configuration of one process. Build it with :meth:`from_env`."""

    home: Path
    db_url: str
    broker_url: str
    artifact_root: Path
    data_roots: tuple[Path, ...]
    max_attempts: int = defaults.MAX_ATTEMPTS
    lease_seconds: float = defaults.LEASE_SECONDS
    heartbeat_seconds: float = defaults.HEARTBEAT_SECONDS
    reconcile_seconds: float = defaults.RECONCILE_SECONDS
    backup_seconds: float = defaults.BACKUP_INTERVAL_SECONDS
    store_retry_seconds: float = defaults.STORE_RETRY_SECONDS

    def job_dir(self, job_id: int) -> Path:
        """Where a job's files live: ``<artifact_root>/jobs/<id>`` (its model, card and backups)."""
        return self.artifact_root / "jobs" / str(job_id)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        home = Path(env["TRAINYARD_HOME"]).expanduser() if env.get("TRAINYARD_HOME") else _default_home()
        db_url = env.get("TRAINYARD_DB_URL") or f"sqlite:///{home / 'trainyard.sqlite'}"
        broker_url = env.get("TRAINYARD_BROKER_URL") or f"sqla+sqlite:///{home / 'broker.sqlite'}"
        artifact_root = (
            Path(env["TRAINYARD_ARTIFACT_ROOT"]).expanduser()
            if env.get("TRAINYARD_ARTIFACT_ROOT")
            else home / "artifacts"
        )
        roots_raw = env.get("TRAINYARD_DATA_ROOTS")
        data_roots = (
            tuple(Path(p).expanduser().resolve() for p in roots_raw.split(os.pathsep) if p) if roots_raw else ()
        )
        lease = _float_env(env, "TRAINYARD_LEASE_SECONDS", defaults.LEASE_SECONDS)
        heartbeat = _float_env(env, "TRAINYARD_HEARTBEAT_SECONDS", min(defaults.HEARTBEAT_SECONDS, lease / 4))
        return cls(
            home=home,
            db_url=db_url,
            broker_url=broker_url,
            artifact_root=artifact_root,
            data_roots=data_roots,
            max_attempts=int(_float_env(env, "TRAINYARD_MAX_ATTEMPTS", defaults.MAX_ATTEMPTS)),
            lease_seconds=lease,
            heartbeat_seconds=heartbeat,
            reconcile_seconds=_float_env(env, "TRAINYARD_RECONCILE_SECONDS", defaults.RECONCILE_SECONDS),
            backup_seconds=_float_env(env, "TRAINYARD_BACKUP_SECONDS", defaults.BACKUP_INTERVAL_SECONDS),
            store_retry_seconds=_float_env(env, "TRAINYARD_STORE_RETRY_SECONDS", defaults.STORE_RETRY_SECONDS),
        )

    def ensure_home(self) -> None:
        """Create the home folder (and the artifact root) if they are missing."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.artifact_root.mkdir(parents=True, exist_ok=True)


def redact_url(url: str) -> str:
    """``redis://:secret@host:6379/0`` -> ``redis://:***@host:6379/0``; safe for logs and screens."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable url>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{user}:***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
