"""Does a job's model fit in this host's memory? Asked before the worker builds it.

The parameters are counted from the shapes (:func:`trainyard.specs.validate_spec` builds the model
without allocating its weights, and refuses one past ``TRAINYARD_SPEC_MAX_PARAMS``); training
needs about ``defaults.TRAINING_WEIGHT_COPIES`` float32 copies of them. The host's memory is what
the kernel says is available, or what the process's cgroup still allows, whichever is less.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainyard import defaults
from trainyard.errors import TrainingError


def check_fits(spec: Any) -> int:
    """The model's parameter count; raises :class:`TrainingError` when training it would not fit in memory
    (or :class:`~trainyard.errors.SpecError` past the spec limit), before any weight is allocated."""
    from trainyard.specs import validate_spec
    from trainyard.specs.limits import human_bytes

    params = validate_spec(spec).total_params
    need = params * 4 * defaults.TRAINING_WEIGHT_COPIES
    available = available_bytes()
    if available is not None and need > available:
        raise TrainingError(
            f"the model has {params:,} parameters: training it needs about {human_bytes(need)} of memory"
            f" (weights, gradients and optimizer state as float32), more than the {human_bytes(available)}"
            " this host has available"
        )
    return params


def available_bytes() -> int | None:
    """Memory this process may still use: MemAvailable, capped by its cgroup's limit; None if unknown."""
    found: list[int] = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    cgroup = Path("/sys/fs/cgroup")
    try:
        limit = (cgroup / "memory.max").read_text().strip()
        if limit != "max":
            found.append(int(limit) - int((cgroup / "memory.current").read_text().strip()))
    except (OSError, ValueError):
        pass
    return max(min(found), 0) if found else None
