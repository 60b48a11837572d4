"""The thin ``rich.live.Live`` driver: read a snapshot, render it, show it, wait, again.

The console, the clock and the sleep are injected, so a test drives a few frames into a
``Console(file=StringIO(), record=True)`` without waiting. A store that stops answering while the
dashboard runs does not end it: the last frame stays on screen with the error above it, and the
next refresh tries again (a first read that fails raises, so the CLI can say so and exit).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from rich.console import Console, RenderableType
from rich.live import Live

from trainyard import defaults
from trainyard.dashboard.render import render
from trainyard.dashboard.snapshot import Snapshot, utcnow
from trainyard.errors import StoreError

SnapshotReader = Callable[[], Snapshot]


class LiveDashboard:
    """Frames from ``read`` on ``console``, one every ``refresh_seconds``, until stopped or ``frames`` are shown."""

    def __init__(
        self,
        read: SnapshotReader,
        *,
        console: Console | None = None,
        clock: Callable[[], datetime] = utcnow,
        refresh_seconds: float = defaults.DASHBOARD_REFRESH_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if refresh_seconds <= 0:
            raise ValueError(f"refresh_seconds: expected a positive number, received {refresh_seconds!r}")
        self.read = read
        self.console = console or Console()
        self.clock = clock
        self.refresh_seconds = refresh_seconds
        self.sleep = sleep
        self.last: Snapshot | None = None

    def frame(self) -> RenderableType:
        """Read and render one frame; on a store error, the last snapshot with the error above it."""
        try:
            snapshot = self.read()
        except StoreError as exc:
            if self.last is None:
                raise
            return render(self.last, self.clock(), self.console.width, problem=str(exc))
        self.last = snapshot
        return render(snapshot, self.clock(), self.console.width)

    def run(self, frames: int | None = None) -> int:
        """Show frames until interrupted (Ctrl-C ends quietly) or ``frames`` were shown; returns how many."""
        shown = 0
        first = self.frame()  # fails before the screen is taken when the store is unreachable
        with Live(
            first, console=self.console, auto_refresh=False, redirect_stdout=False, redirect_stderr=False
        ) as live:
            shown = 1
            try:
                while frames is None or shown < frames:
                    self.sleep(self.refresh_seconds)
                    live.update(self.frame(), refresh=True)
                    shown += 1
            except KeyboardInterrupt:
                pass
        return shown


def print_frame(read: SnapshotReader, console: Console, clock: Callable[[], datetime] = utcnow) -> Snapshot:
    """``--once``: read one snapshot, print its frame, return the snapshot."""
    snapshot = read()
    console.print(render(snapshot, clock(), console.width))
    return snapshot
