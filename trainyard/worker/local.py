"""A worker started in the background on this machine, for ``trainyard run`` (and the tests).

It is a real ``celery -A trainyard.worker worker`` process in its own session, logging to a file
under ``TRAINYARD_HOME/logs``. :meth:`LocalWorker.stop` is a warm shutdown (SIGTERM to the
parent): a running job finishes its batch and is handed back, so nothing is lost.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from trainyard.worker.command import process_argv, worker_args

#: Set for a background worker: the pid of the process that started it and owns its life.
PARENT_PID_ENV = "TRAINYARD_PARENT_PID"

#: Seconds a warm shutdown may take before the worker is killed.
STOP_TIMEOUT_SECONDS = 60.0


class LocalWorker:
    """One background worker process; use it as a context manager or call start/stop."""

    def __init__(
        self,
        name: str,
        log_path: Path,
        *,
        concurrency: int = 1,
        env: Mapping[str, str] | None = None,
        loglevel: str = "INFO",
        extra: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.log_path = Path(log_path)
        self.concurrency = concurrency
        self.env = dict(os.environ if env is None else env)
        self.env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        # The worker shuts down (warm: jobs handed back) if this process dies without stopping it.
        self.env[PARENT_PID_ENV] = str(os.getpid())
        self.argv = process_argv(worker_args(name, concurrency, loglevel, extra))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> LocalWorker:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,  # Ctrl-C in the terminal reaches us, not the worker
            )
        finally:
            log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None, "worker not started"
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> int | None:
        """Warm shutdown: SIGTERM to the worker's parent, then SIGKILL to its group after ``timeout``."""
        if self.process is None or self.process.poll() is not None:
            return self.returncode()
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.process.wait(10)

    def kill(self) -> None:
        """SIGKILL the whole worker (its pool children die with their parent)."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(10)

    def log_tail(self, lines: int = 40) -> str:
        """The end of the worker's log (for error messages)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> LocalWorker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_until(predicate: object, timeout: float, interval: float = 0.25) -> bool:
    """Poll ``predicate()`` until it is true or ``timeout`` seconds pass; return its last truth."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():  # type: ignore[operator]
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
