"""What people do with finished jobs: compare them, export their curves, clean them up.

* :mod:`trainyard.results.compare`: the jobs side by side, the spec fields that differ, the metrics;
* :mod:`trainyard.results.export`: TensorBoard event files and a tidy CSV from the stored epochs;
* :mod:`trainyard.results.cleanup`: disk use of a job's files, and deleting finished jobs.

Everything reads the store (and the artifact folder); nothing here trains or imports TensorFlow.
"""

from __future__ import annotations

from trainyard.results.cleanup import disk_usage

__all__ = ["disk_usage"]
