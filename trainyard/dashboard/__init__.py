"""The live terminal dashboard, in three parts the way ``rich.progress`` wraps ``rich.live``.

:mod:`~trainyard.dashboard.snapshot` reads what one frame shows from the store (one short, read-only
transaction), :mod:`~trainyard.dashboard.render` turns a snapshot into Rich renderables (pure), and
:mod:`~trainyard.dashboard.live` drives ``rich.live.Live`` with the console and the clock injected.
:mod:`~trainyard.dashboard.plot` draws training curves with matplotlib for reports.
"""

from __future__ import annotations

from trainyard.dashboard.live import LiveDashboard, print_frame
from trainyard.dashboard.render import render
from trainyard.dashboard.snapshot import RunningJob, Snapshot, read_snapshot

__all__ = ["LiveDashboard", "RunningJob", "Snapshot", "print_frame", "read_snapshot", "render"]
