"""The command line of a trainyard worker: ``celery -A trainyard.worker worker ...``, built here only.

``trainyard worker`` runs it in its own process (and prints it); :class:`~trainyard.worker.local.LocalWorker`
(``trainyard run``, the tests, the benchmarks) starts it in the background.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from trainyard import defaults

#: What ``celery -A`` loads: the package whose ``app`` is trainyard's Celery app.
CELERY_APP = "trainyard.worker"


def worker_args(name: str, concurrency: int, loglevel: str = "INFO", extra: Sequence[str] = ()) -> list[str]:
    """Celery's ``worker`` sub-command and its options for node ``name`` with ``concurrency`` training
    processes; ``extra`` (the user's own Celery options) come last, so they win."""
    return [
        "worker",
        "-n",
        name,
        "-c",
        str(concurrency),
        # Always prefork: TensorFlow is imported in each forked pool child, never in the parent;
        # a child that dies (out of memory, SIGKILL) is replaced while the parent keeps its
        # heartbeat; the warm-shutdown hand-back event is shared with the children through fork;
        # and only prefork can enforce time limits or terminate a task (solo and threads cannot).
        "-P",
        "prefork",
        "-Q",
        defaults.QUEUE,
        "--loglevel",
        loglevel,
        *extra,
    ]


def celery_command(args: Sequence[str]) -> list[str]:
    """``celery -A trainyard.worker <args>``: what a user would type to run ``args`` by hand."""
    return ["celery", "-A", CELERY_APP, *args]


def process_argv(args: Sequence[str]) -> list[str]:
    """The same command for a child process of this Python (``python -m celery``, this virtualenv)."""
    return [sys.executable, "-m", *celery_command(args)]
