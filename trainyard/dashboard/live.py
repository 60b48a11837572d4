"""The thin ``rich.live.Live`` driver: read a snapshot, render it, show it, wait, again.

The console, the clock and the sleep are injected, so a test drives a few frames into a
``Console(file=StringIO(), record=True)`` without waiting. A store that stops answering while the
dashboard runs does not end it: the last frame stays on screen with the error above it, and the
next refresh tries again (a first read that fails raises, so the CLI can say so and exit).

The driver is generic in what it reads and how it draws: ``trainyard dashboard`` reads a
:class:`~trainyard.dashboard.snapshot.Snapshot` and draws it with :func:`render`; ``trainyard run``
reads its own jobs and draws their progress, stopping once they are all finished (``until``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Generic, Protocol, TypeVar

from rich.console import Console, RenderableType
from rich.live import Live

from trainyard import defaults
from trainyard.dashboard.render import render
from trainyard.dashboard.snapshot import Snapshot
from trainyard.db.records import utcnow
from trainyard.errors import StoreError

S = TypeVar("S")
S_contra = TypeVar("S_contra", contravariant=True)

SnapshotReader = Callable[[], Snapshot]


class Renderer(Protocol[S_contra]):
    """Draws one frame of what was read, at ``now``, for a terminal ``width`` columns wide and, when
    it is a terminal, ``height`` rows high (the frame should fit: ``Live`` cuts off what does not);
    ``problem`` is an error to show above a frame of the last good read."""

    def __call__(
        self, read: S_contra, now: datetime, width: int, *, height: int | None = None, problem: str | None = None
    ) -> RenderableType: ...


class LiveDashboard(Generic[S]):
    """Frames from ``read`` drawn by ``draw`` on ``console``, one every ``refresh_seconds``, until
    interrupted, ``frames`` are shown or ``until(last read)`` is true."""

    def __init__(
        self,
        read: Callable[[], S],
        *,
        draw: Renderer[S] = render,  # type: ignore[assignment]
        console: Console | None = None,
        clock: Callable[[], datetime] = utcnow,
        refresh_seconds: float = defaults.DASHBOARD_REFRESH_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if refresh_seconds <= 0:
            raise ValueError(f"refresh_seconds: expected a positive number, received {refresh_seconds!r}")
        self.read = read
        self.draw = draw
        self.console = console or Console()
        self.clock = clock
        self.refresh_seconds = refresh_seconds
        self.sleep = sleep
        self.last: S | None = None
        self.interrupted = False  # Ctrl-C (or a signal turned into KeyboardInterrupt) ended run()

    def frame(self) -> RenderableType:
        """Read and draw one frame; on a store error, the last read with the error above it."""
        try:
            snapshot = self.read()
        except StoreError as exc:
            if self.last is None:
                raise
            return self.draw(self.last, self.clock(), self.console.width, height=self._height(), problem=str(exc))
        self.last = snapshot
        return self.draw(snapshot, self.clock(), self.console.width, height=self._height())

    def _height(self) -> int | None:
        # Off a terminal, Live prints the last frame once, whole: nothing to fit.
        return self.console.height if self.console.is_terminal else None

    def run(self, frames: int | None = None, *, until: Callable[[S], bool] | None = None) -> int:
        """Show frames until interrupted (Ctrl-C ends quietly and sets :attr:`interrupted`), ``frames``
        were shown, or ``until`` holds for the last read; returns how many frames were shown."""
        shown = 0
        first = self.frame()  # fails before the screen is taken when the store is unreachable
        with Live(
            first, console=self.console, auto_refresh=False, redirect_stdout=False, redirect_stderr=False
        ) as live:
            shown = 1
            try:
                while (frames is None or shown < frames) and not self._done(until):
                    self.sleep(self.refresh_seconds)
                    live.update(self.frame(), refresh=True)
                    shown += 1
            except KeyboardInterrupt:
                self.interrupted = True
        return shown

    def _done(self, until: Callable[[S], bool] | None) -> bool:
        return until is not None and self.last is not None and until(self.last)


def print_frame(read: SnapshotReader, console: Console, clock: Callable[[], datetime] = utcnow) -> Snapshot:
    """``--once``: read one snapshot, print its frame, return the snapshot."""
    snapshot = read()
    console.print(render(snapshot, clock(), console.width))
    return snapshot
