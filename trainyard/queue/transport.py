"""The broker transport: which transport a broker URL means, how to reach it, how many slots wait in it.

Two kinds of broker are supported:

* Redis (``redis://[:password@]host:port/db``, ``rediss://`` for TLS) for real deployments. Its
  ``visibility_timeout`` is set far above any training: the store's lease, not Redis redelivery,
  decides when a job runs again (``docs/architecture.md``, *Broker messages*).
* The embedded broker (``sqla+sqlite:///$TRAINYARD_HOME/broker.sqlite``, the default): kombu's
  SQLAlchemy transport on a SQLite file, so one desktop needs no server. It has no broadcast
  (``celery inspect`` and remote control do not work on it) and loses the in-flight message of a
  worker killed with SIGKILL; the reconciler re-dispatches such jobs.

The workers' Celery app (``trainyard.worker.app``) and the plain producer (:mod:`trainyard.queue.slots`)
both connect through :func:`celery_conf`, so they always reach the same broker the same way. Nothing
here imports TensorFlow or Celery.
"""

from __future__ import annotations

import ssl
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import kombu
from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import sqlalchemy as kombu_sqla
from kombu.transport.sqlalchemy.models import ModelBase as KombuModelBase

from trainyard import defaults
from trainyard.config import Settings, redact_url
from trainyard.errors import BrokerError

#: The kombu transport alias of the embedded broker: its URLs read ``trainyard+sqlite:///<file>``,
#: so that any kombu ``Connection`` (Celery's own ``report`` and ``inspect`` included) can parse them.
EMBEDDED_ALIAS = "trainyard"


#: kombu's SQLAlchemy models declare ``lazy="noload"``, deprecated (not broken) in SQLAlchemy 2.1.
_NOLOAD_DEPRECATED = r"The ``noload`` loader strategy is deprecated"

_models_lock = threading.Lock()
_models_configured = False


def _configure_kombu_models() -> None:
    """Configure the mappers of kombu's message tables once, hiding only their ``noload`` deprecation.

    SQLAlchemy warns when it configures those mappers, which it does once per process, on their first
    use. Configuring kombu's registry (and only it) here, inside ``catch_warnings``, keeps the warning
    out of the user's sight without touching the program's warning filters: they are restored on exit.
    (``catch_warnings`` is process-wide while it lasts, a few milliseconds once per process; a warning
    another thread raises in that window is filtered as before plus this one message.)
    """
    global _models_configured
    with _models_lock:
        if _models_configured:
            return
        from sqlalchemy.exc import SADeprecationWarning

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_NOLOAD_DEPRECATED, category=SADeprecationWarning)
            KombuModelBase.registry.configure()
        _models_configured = True


#: Makes counting a queue's waiting messages an index-only count (the reconciler asks every pass).
_SIZE_INDEX = "ix_trainyard_message_queue_visible"
_indexed_engines: set[str] = set()


class _EmbeddedChannel(kombu_sqla.Channel):
    """kombu's SQLAlchemy channel, with SQLite tuned for several processes (WAL, busy timeout), safe
    when several processes open a new broker file at once, a queue's size counted from an index, so
    it costs the same with 10,000 messages as with 100, and consumed messages deleted.

    kombu marks a consumed message ``visible = false`` and keeps its row for ever, so the table (and
    every poll, which no index serves) grows with every slot ever sent. A consumed row is never read
    again (an unacknowledged message is put back as a new row), so it is deleted instead; rows left
    invisible by older versions are deleted when a process first opens the file."""

    def __init__(self, connection: Any, **kwargs: Any) -> None:
        super().__init__(connection, **kwargs)  # defines kombu's models (queue_cls, message_cls)
        _configure_kombu_models()

    def _open(self):  # type: ignore[no-untyped-def]
        import sqlalchemy as sa
        from sqlalchemy.exc import OperationalError

        for attempt in range(3):
            try:
                engine, session_maker = super()._open()  # creates kombu's tables on first use
                break
            except OperationalError as exc:
                # Processes opening a new broker file at once (``trainyard run`` starts its worker
                # while it submits) race to create kombu's tables: "table ... already exists".
                # The tables are there now; kombu kept no engine, so opening again completes.
                if "already exists" not in str(exc) or attempt == 2:
                    raise
        url = str(engine.url)
        if url not in _indexed_engines:
            table = self.message_cls.__tablename__
            with engine.begin() as conn:  # an existing broker file gets it too (create_all skips its tables)
                conn.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS {_SIZE_INDEX} ON {table} (queue_id, visible)")
                # rows consumed before consumed rows were deleted (older trainyard versions)
                conn.execute(sa.delete(self.message_cls.__table__).where(self.message_cls.visible == sa.false()))
            _indexed_engines.add(url)
        return engine, session_maker

    def _get_or_create(self, queue: str) -> Any:
        from sqlalchemy.exc import IntegrityError

        try:
            return super()._get_or_create(queue)
        except IntegrityError:
            # Another process added the queue's row between kombu's look-up and its insert.
            self.session.rollback()
            return super()._get_or_create(queue)

    def _get(self, queue: str) -> Any:
        # kombu's own _get, but the consumed row is deleted instead of hidden (see the class docstring)
        import sqlalchemy as sa
        from kombu.transport.virtual import Empty
        from kombu.utils.encoding import bytes_to_str
        from kombu.utils.json import loads

        obj = self._get_or_create(queue)
        if self.session.bind.name == "sqlite":
            self.session.execute(sa.text("BEGIN IMMEDIATE TRANSACTION"))
        try:
            message = self.message_cls
            row = (
                self.session.query(message)
                .with_for_update()
                .filter(message.queue_id == obj.id, message.visible == sa.true())
                .order_by(message.sent_at, message.id)
                .limit(1)
                .first()
            )
            if row is None:
                raise Empty()
            payload = loads(bytes_to_str(row.payload))
            self.session.delete(row)
            return payload
        finally:
            self.session.commit()

    def _size(self, queue: str) -> int:
        # kombu counts ``SELECT count(*) FROM (SELECT <every column> ...)``: a row read per message.
        import sqlalchemy as sa

        obj = self._get_or_create(queue)
        message = self.message_cls
        count = (
            self.session.query(sa.func.count())
            .select_from(message)
            .filter(message.queue_id == obj.id, message.visible == sa.true())
            .scalar()
        )
        return int(count or 0)

    def _engine_from_config(self):  # type: ignore[no-untyped-def]
        import sqlalchemy as sa

        url = self.connection.client.hostname
        database = sa.engine.make_url(url).database
        if url.startswith("sqlite") and database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)  # the broker file's folder
        engine = sa.create_engine(url, connect_args={"timeout": defaults.SQLITE_BUSY_TIMEOUT_SECONDS})
        if url.startswith("sqlite"):
            from trainyard.db.engine import enable_wal

            @sa.event.listens_for(engine, "connect")
            def _pragmas(dbapi_conn: Any, _record: Any) -> None:
                cursor = dbapi_conn.cursor()
                try:
                    enable_wal(cursor, defaults.SQLITE_BUSY_TIMEOUT_SECONDS)
                finally:
                    cursor.close()

        return engine


class EmbeddedTransport(kombu_sqla.Transport):
    """The embedded broker: kombu's SQLAlchemy transport polling every EMBEDDED_BROKER_POLLING_SECONDS.

    kombu passes every transport option to ``create_engine``, so the polling interval cannot be
    given as an option; it is a class attribute here instead.
    """

    Channel = _EmbeddedChannel
    polling_interval = defaults.EMBEDDED_BROKER_POLLING_SECONDS

    def drain_events(self, connection: Any, timeout: float | None = None) -> None:
        """kombu's polling for a message, but a worker asked to shut down stops waiting within one
        polling interval. Celery's loop for a transport without an event loop
        (``celery.worker.loops.synloop``) looks at a shutdown request only between two of these
        calls, each waiting up to 2 s: a warm shutdown began up to 2 s after its signal, and
        ``trainyard run`` waited that long for its worker at the end of every run."""
        if timeout is None:
            return super().drain_events(connection)
        from kombu.transport.virtual import Empty

        deadline = time.monotonic() + timeout
        while True:
            try:
                self.cycle.get(self._deliver, timeout=timeout)
                return None
            except Empty:
                left = deadline - time.monotonic()
                if left <= 0 or _worker_stopping():
                    raise TimeoutError() from None  # socket.timeout, what Celery expects
                time.sleep(min(self.polling_interval, left))


def _worker_stopping() -> bool:
    """True in a Celery worker's process once a warm or cold shutdown was asked for (the flags its
    signal handlers set: the exit code, 0 included)."""
    state = sys.modules.get("celery.worker.state")  # never imported here: only a worker has set it
    return state is not None and (state.should_stop is not None or state.should_terminate is not None)


TRANSPORT_ALIASES[EMBEDDED_ALIAS] = f"{__name__}:EmbeddedTransport"


def is_embedded(broker_url: str) -> bool:
    """True when ``broker_url`` names the embedded broker: kombu's SQLAlchemy transport, as ``sqla+...``,
    ``sqlalchemy+...`` or trainyard's own alias ``trainyard+...``. The one test of it in trainyard."""
    return broker_url.startswith(("sqla+", "sqlalchemy+", f"{EMBEDDED_ALIAS}+"))


def _embedded_target(broker_url: str) -> str:
    return broker_url.split("+", 1)[1]


def _redis_ssl(broker_url: str) -> dict[str, Any] | None:
    """TLS options for ``rediss://``: verify the server unless the URL says otherwise (``?ssl_cert_reqs=``)."""
    parts = urlsplit(broker_url)
    if parts.scheme != "rediss":
        return None
    if any(key.startswith("ssl_") for key in parse_qs(parts.query)):
        return None  # kombu reads the ssl_* query parameters itself
    return {"ssl_cert_reqs": ssl.CERT_REQUIRED}


def celery_conf(broker_url: str) -> dict[str, Any]:
    """The broker part of the Celery configuration for ``broker_url``."""
    if is_embedded(broker_url):
        return {
            "broker_url": f"{EMBEDDED_ALIAS}+{_embedded_target(broker_url)}",
            "broker_transport": None,
            "broker_transport_options": {},
            "broker_use_ssl": None,
        }
    options: dict[str, Any] = {}
    if urlsplit(broker_url).scheme in ("redis", "rediss"):
        options = {
            "visibility_timeout": defaults.REDIS_VISIBILITY_TIMEOUT_SECONDS,
            "socket_connect_timeout": defaults.BROKER_CONNECT_TIMEOUT_SECONDS,
        }
    return {
        "broker_url": broker_url,
        "broker_transport": None,
        "broker_transport_options": options,
        "broker_use_ssl": _redis_ssl(broker_url),
    }


def connection(broker_url: str) -> kombu.Connection:
    """A (lazy) kombu connection to ``broker_url`` configured exactly as the workers' is."""
    conf = celery_conf(broker_url)
    return kombu.Connection(
        conf["broker_url"],
        transport=conf["broker_transport"],
        transport_options=dict(conf["broker_transport_options"]),
        ssl=conf["broker_use_ssl"] or False,
        connect_timeout=defaults.BROKER_CONNECT_TIMEOUT_SECONDS,
    )


def ensure_connected(conn: kombu.Connection) -> None:
    """Connect now, once, within defaults.BROKER_CONNECT_TIMEOUT_SECONDS (kombu's errors propagate)."""
    conn.ensure_connection(max_retries=1, interval_start=0.5, timeout=defaults.BROKER_CONNECT_TIMEOUT_SECONDS)


def unreachable(settings: Settings, exc: BaseException) -> BrokerError:
    """The error users see when the broker cannot be used: names it (password redacted) and the cause."""
    return BrokerError(f"broker {redact_url(settings.broker_url)} is unreachable: {exc}")


def check_broker(settings: Settings | None = None) -> None:
    """Raise :class:`BrokerError` unless the broker answers (within defaults.BROKER_CONNECT_TIMEOUT_SECONDS)."""
    settings = settings or Settings.from_env()
    try:
        with connection(settings.broker_url) as conn:
            ensure_connected(conn)
            with conn.channel() as channel:
                channel.queue_declare(defaults.QUEUE, durable=True, auto_delete=False)
    except Exception as exc:  # kombu raises transport-specific errors; all mean the same here
        raise unreachable(settings, exc) from exc


def queue_size(settings: Settings | None = None, queue: str = defaults.QUEUE) -> int:
    """Messages waiting in ``queue`` (not those already delivered to a worker).

    Redis counts its lists; the embedded broker counts its visible rows. A queue that does not
    exist yet holds 0 messages.
    """
    settings = settings or Settings.from_env()
    try:
        with connection(settings.broker_url) as conn:
            ensure_connected(conn)
            with conn.channel() as channel:
                _name, count, _consumers = channel.queue_declare(queue, durable=True, auto_delete=False, passive=True)
                return int(count)
    except Exception as exc:
        if _is_missing_queue(exc):
            return 0
        raise unreachable(settings, exc) from exc


def _is_missing_queue(exc: BaseException) -> bool:
    from kombu.exceptions import ChannelError

    return isinstance(exc, ChannelError) and "NOT_FOUND" in str(exc).upper()
