"""The workers' Celery app, built without starting a worker: configuration and what it imports."""

from __future__ import annotations

import subprocess
import sys

from trainyard import defaults
from trainyard.config import Settings
from trainyard.queue import TRAIN_NEXT
from trainyard.worker.app import make_app


def test_importing_the_worker_app_imports_no_tensorflow() -> None:
    code = (
        "import sys, trainyard.worker, trainyard.worker.tasks, trainyard.worker.node; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras') or m == 'trainyard.training']; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_app_accepts_json_only_and_acknowledges_late(settings: Settings) -> None:
    conf = make_app(settings).conf
    assert conf.accept_content == ["json"]
    assert (conf.task_serializer, conf.result_serializer) == ("json", "json")
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.worker_proc_alive_timeout >= 60
    assert conf.task_default_queue == "trainyard"


def test_the_app_consumes_the_queue_the_slots_are_sent_to(settings: Settings) -> None:
    import trainyard.worker.tasks  # noqa: F401  (registers the task on the module's app)
    from trainyard.worker.app import app

    queue = make_app(settings).amqp.queues[defaults.QUEUE]
    assert (queue.name, queue.routing_key, queue.exchange.name, queue.exchange.type) == (
        "trainyard",
        "trainyard",
        "trainyard",
        "direct",
    )
    assert queue.durable and not queue.auto_delete
    assert TRAIN_NEXT == "trainyard.train_next" and TRAIN_NEXT in app.tasks
