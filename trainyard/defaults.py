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
#: Past it, the attempt is interrupted (never failed): the job is handed back with its backup as
#: soon as the store answers again, and resumes from that backup.
STORE_RETRY_SECONDS = 20.0

#: SQLite busy timeout in seconds: how long a writer waits for the lock before giving up.
SQLITE_BUSY_TIMEOUT_SECONDS = 30.0

#: Most memory one SQLite connection keeps as its page cache, in KiB (SQLite's default is 2,000).
#: A delete or an export of 1,000 jobs of 100 epochs touches tens of MB of pages; with a smaller
#: cache SQLite reads them again and spills dirty ones mid-transaction (deleting 1,000 jobs' epochs:
#: 204 ms with the default, 169 ms with 32 MiB, 146 ms with 64 MiB, 140 ms with 128 MiB). Taken only
#: as pages are read.
SQLITE_CACHE_KIB = 65_536

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

#: At most this many sweeps are shown by the dashboard: the running ones first, then the latest ended.
DASHBOARD_SWEEPS = 5

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

#: Least seconds between two writes of a training's epochs to the store: the epochs that end in
#: between go in one transaction (a backup, a pruning decision and the run's end write at once).
#: One transaction costs as much as an epoch of a small model, and a writer thread busy every epoch
#: slows the training thread down far more than its own CPU time (they share the GIL).
EPOCH_WRITE_SECONDS = 0.5

#: A training run is backed up at the end of an epoch once this many seconds have passed since its
#: last backup (every epoch, for epochs longer than that); a crash loses at most this much training.
BACKUP_INTERVAL_SECONDS = 1.0

#: A category input keeps at most this many of each column's most frequent values (``max_categories``).
MAX_CATEGORIES = 1000

#: Largest embedding width the default rule (``1.6 * categories ** 0.56``) gives a category column.
EMBEDDING_DIM_MAX = 50

#: Rows ``trainyard predict`` reads, predicts and writes at a time: its memory is bounded by this, not the file.
PREDICT_CHUNK_ROWS = 100_000

# -- what one spec may cost (each raised by the environment variable named; see trainyard.specs.limits)

#: Largest spec file, YAML text or ``--set`` value read, in bytes (``TRAINYARD_SPEC_MAX_BYTES``).
SPEC_MAX_BYTES = 1024 * 1024

#: Most values (mappings, lists and scalars) a spec may hold once its YAML aliases are expanded
#: (``TRAINYARD_SPEC_MAX_NODES``). Aliases are fine; a 1 KB file expanding to 10^9 values is not.
SPEC_MAX_NODES = 100_000

#: Deepest nesting of mappings and lists in a spec, the top mapping being level 1 (``TRAINYARD_SPEC_MAX_NESTING``).
SPEC_MAX_NESTING = 32

#: Most layers in a spec (``TRAINYARD_SPEC_MAX_LAYERS``).
SPEC_MAX_LAYERS = 1_000

#: Most layers on one path from an input to an output (``TRAINYARD_SPEC_MAX_DEPTH``). Keras builds
#: and saves a functional model by recursing over its graph; deeper graphs are refused before that.
SPEC_MAX_DEPTH = 1_000

#: Most parameters a spec's model may have (``TRAINYARD_SPEC_MAX_PARAMS``): 400 MB of float32 weights,
#: generous for a model of tables. Counted from the shapes, before any weight is allocated.
SPEC_MAX_PARAMS = 100_000_000

#: A worker trains a model only if the host's available memory holds this many float32 copies of
#: its weights (the weights, their gradients and two optimizer slots, as Adam keeps).
TRAINING_WEIGHT_COPIES = 4

#: Longest string in a spec (a key, a name, a path), in characters (``TRAINYARD_SPEC_MAX_STRING``).
SPEC_MAX_STRING_CHARS = 4_096

#: Longest number written in a spec, in characters or digits (``TRAINYARD_SPEC_MAX_NUMBER``).
SPEC_MAX_NUMBER_CHARS = 100

#: Characters of a received value an error message shows (a longer value is cut, its size said).
MESSAGE_VALUE_CHARS = 60

#: Longest path or message of one problem; anything longer is cut (a message is one line, not a dump).
PROBLEM_MAX_CHARS = 500

#: Tags a job may carry (its spec's ``tags`` and ``submit --tag`` together), and the longest tag.
MAX_TAGS = 32
MAX_TAG_LENGTH = 64
