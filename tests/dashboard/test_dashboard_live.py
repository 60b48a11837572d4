"""The Live driver with an injected console, clock and sleep: frames follow the store, errors do not end it."""

from __future__ import annotations

from io import StringIO

import pytest
from dashboard_builders import NOW
from rich.console import Console

from trainyard.dashboard.live import LiveDashboard, print_frame
from trainyard.dashboard.snapshot import Snapshot
from trainyard.db.records import JobState
from trainyard.errors import StoreError


def queued(count: int) -> Snapshot:
    return Snapshot(taken_at=NOW, source="db", counts={JobState.QUEUED: count})


class Reader:
    """Hands out the given snapshots (or raises the given errors) one call after the other."""

    def __init__(self, *items: Snapshot | Exception) -> None:
        self.items = list(items)
        self.calls = 0

    def __call__(self) -> Snapshot:
        item = self.items[min(self.calls, len(self.items) - 1)]
        self.calls += 1
        if isinstance(item, Exception):
            raise item
        return item


def terminal(width: int = 100) -> Console:
    return Console(file=StringIO(), width=width, height=60, force_terminal=True, color_system=None, record=True)


def test_each_refresh_reads_the_store_again_and_redraws():
    console, naps = terminal(), []
    read = Reader(queued(1), queued(2), queued(3))
    shown = LiveDashboard(read, console=console, clock=lambda: NOW, refresh_seconds=2.5, sleep=naps.append).run(
        frames=3
    )
    text = console.export_text()
    assert shown == 3 and read.calls == 3 and naps == [2.5, 2.5]
    assert "queued 1" in text and "queued 2" in text and "queued 3" in text


def test_a_store_that_stops_answering_keeps_the_last_frame_with_the_error():
    console = terminal()
    read = Reader(queued(7), StoreError("cannot reach the job store at postgresql://db/x"))
    LiveDashboard(read, console=console, clock=lambda: NOW, sleep=lambda s: None).run(frames=2)
    last_frame = console.export_text().rsplit("trainyard  db", 1)[-1]  # from the last header on
    assert "cannot reach the job store at postgresql://db/x (showing the last frame, retrying)" in last_frame
    assert "queued 7" in last_frame


def test_a_store_unreachable_from_the_start_raises_before_taking_the_screen():
    console = terminal()
    with pytest.raises(StoreError, match="cannot reach"):
        LiveDashboard(Reader(StoreError("cannot reach the job store")), console=console).run(frames=1)
    assert console.export_text() == ""


def test_ctrl_c_ends_quietly():
    def interrupted(_seconds: float) -> None:
        raise KeyboardInterrupt

    console = terminal()
    view = LiveDashboard(Reader(queued(4)), console=console, clock=lambda: NOW, sleep=interrupted)
    assert view.run() == 1
    assert "queued 4" in console.export_text() and view.interrupted


def test_any_reader_and_drawing_run_until_a_condition_holds():
    """How ``trainyard run`` uses the driver: its own reads and frames, ending when its jobs are done."""
    console, reads = terminal(), iter(["waiting", "training", "done", "never read"])

    def draw(state: str, now: object, width: int, *, height: int | None = None, problem: str | None = None) -> str:
        return f"{state} at width {width}"

    view = LiveDashboard(lambda: next(reads), draw=draw, console=console, sleep=lambda s: None)
    assert view.run(until=lambda state: state == "done") == 3
    assert view.last == "done" and not view.interrupted
    assert "done at width 100" in console.export_text()


def test_the_frame_follows_the_console_width():
    narrow, wide = terminal(60), terminal(200)
    for console in (narrow, wide):
        print_frame(Reader(queued(2)), console, clock=lambda: NOW)
    narrow_text, wide_text = narrow.export_text(), wide.export_text()
    assert max(map(len, narrow_text.splitlines())) <= 60 < max(map(len, wide_text.splitlines()))
    assert "queued 2" in narrow_text and "queued 2" in wide_text


def test_a_terminal_frame_is_drawn_for_the_terminals_height_and_a_file_gets_every_row():
    heights = []

    def draw(state: str, now: object, width: int, *, height: int | None = None, problem: str | None = None) -> str:
        heights.append(height)
        return state

    LiveDashboard(lambda: "one", draw=draw, console=terminal(), sleep=lambda s: None).run(frames=1)
    piped = Console(file=StringIO(), width=100, height=60, force_terminal=False)
    LiveDashboard(lambda: "one", draw=draw, console=piped, sleep=lambda s: None).run(frames=1)
    assert heights == [60, None]
