"""Every tunable default of trainyard, in one place. Environment variables override some (see config)."""

from __future__ import annotations

#: Seconds a claimed job stays owned by its worker without a heartbeat before it may be re-dispatched.
LEASE_SECONDS = 60.0

#: Seconds between two lease renewals (and cancel checks) of a training job; well under LEASE_SECONDS.
HEARTBEAT_SECONDS = 5.0

#: Seconds between two worker heartbeats written to the ``workers`` table.
WORKER_HEARTBEAT_SECONDS = 5.0

#: A worker whose last heartbeat is older than this many seconds is shown as lost.
WORKER_LOST_AFTER_SECONDS = 30.0

#: Seconds between two passes of the reconciler (expired leases, lost broker messages).
RECONCILE_SECONDS = 10.0

#: A queued job is only re-dispatched if its last dispatch is at least this many seconds old.
REDISPATCH_GRACE_SECONDS = 5.0

#: How many times a job may be started (first run included) before it ends ``failed``.
MAX_ATTEMPTS = 3

#: Priority given to jobs submitted without ``--priority``; higher runs first.
PRIORITY = 0

#: Seconds a worker keeps retrying an idempotent store write (an epoch's metrics, a job's end)
#: whose connection was dropped (PostgreSQL restarted, backend terminated, SQLite still locked).
STORE_RETRY_SECONDS = 20.0

#: SQLite busy timeout in seconds: how long a writer waits for the lock before giving up.
SQLITE_BUSY_TIMEOUT_SECONDS = 30.0

#: Polling interval of the embedded (SQLAlchemy) broker, in seconds.
EMBEDDED_BROKER_POLLING_SECONDS = 0.2

#: Name of the Celery queue trainyard's jobs travel on.
QUEUE = "trainyard"

#: Seconds the dashboard waits between two frames.
DASHBOARD_REFRESH_SECONDS = 1.0

#: Number of recently finished jobs the dashboard shows.
DASHBOARD_RECENT_JOBS = 10

#: At most this many running jobs are read and shown by the dashboard; the rest are counted ("and 3 more").
DASHBOARD_MAX_RUNNING = 20

#: Workers not heard from for this many seconds are no longer shown by the dashboard (lost ones included).
DASHBOARD_FORGET_WORKERS_SECONDS = 24 * 3600.0

#: Seconds a pool child may take to start (importing TensorFlow takes several); Celery's default is 4.
WORKER_PROC_ALIVE_TIMEOUT_SECONDS = 120.0

#: Redis redelivers an unacknowledged message after this many seconds; a week, far above any
#: training, so a long job is never started twice by Redis (celery#5935, celery#5306).
REDIS_VISIBILITY_TIMEOUT_SECONDS = 7 * 24 * 3600

#: Seconds to wait for a broker connection before reporting it unreachable.
BROKER_CONNECT_TIMEOUT_SECONDS = 5.0

#: Seconds to wait for a database server to answer before saying it is unreachable.
DB_CONNECT_TIMEOUT_SECONDS = 10

#: Seconds between two refreshes of ``trainyard run``'s progress display.
RUN_REFRESH_SECONDS = 0.5

#: Jobs ``trainyard jobs`` shows unless ``--limit`` says otherwise (the newest ones).
JOBS_LIST_LIMIT = 100

#: A training run is backed up at the end of an epoch once this many seconds have passed since its
#: last backup (every epoch, for epochs longer than that); a crash loses at most this much training.
BACKUP_INTERVAL_SECONDS = 1.0

#: Tags a job may carry (its spec's ``tags`` and ``submit --tag`` together), and the longest tag.
MAX_TAGS = 32
MAX_TAG_LENGTH = 64
