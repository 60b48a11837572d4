"""What a host can train on, found without importing TensorFlow, and how a worker uses it.

The worker's parent process must not import TensorFlow (it is not fork-safe once it has started
threads or touched CUDA: tensorflow#27074, celery#3402), so GPUs are listed with
``nvidia-smi -L`` and filtered by ``CUDA_VISIBLE_DEVICES``. :func:`plan_worker` turns that into a
concurrency (the number of prefork pool processes, each training one job at a time) and the GPUs
each pool child sees:

* several GPUs, default: one pool process over all of them, training each job with
  ``MirroredStrategy`` (chosen by the training core);
* several GPUs with ``per_gpu``: one pool process per GPU, each pinned with ``CUDA_VISIBLE_DEVICES``;
* one GPU: one pool process, the training core's cheap single-device path;
* no GPU: a few processes, since TensorFlow already spreads one training over cores.

An explicit concurrency overrides the count, never the pinning; :meth:`WorkerPlan.describe` says
what then really runs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

#: Set by ``trainyard worker --per-gpu`` for the pool children: the GPUs to pin, one per child index.
PIN_GPUS_ENV = "TRAINYARD_PIN_GPUS"

#: Testing and CPU-host hook: split the CPU into this many logical devices and train with
#: ``MirroredStrategy`` over them (how multi-replica code is exercised without GPUs).
LOGICAL_CPUS_ENV = "TRAINYARD_LOGICAL_CPUS"

_GPU_LINE = re.compile(r"^GPU (?P<index>\d+): (?P<name>.+?)(?: \(UUID: (?P<uuid>[^)]+)\))?\s*$")


@dataclass(frozen=True)
class Gpu:
    """One GPU as ``nvidia-smi -L`` lists it."""

    index: int
    name: str
    uuid: str | None = None

    def __str__(self) -> str:
        return f"gpu:{self.index} {self.name}"


def parse_nvidia_smi(text: str) -> list[Gpu]:
    """The GPUs in ``nvidia-smi -L`` output (MIG sub-devices are not listed separately)."""
    gpus = []
    for line in text.splitlines():
        match = _GPU_LINE.match(line.strip())
        if match:
            gpus.append(Gpu(int(match["index"]), match["name"], match["uuid"]))
    return gpus


def visible(gpus: list[Gpu], cuda_visible_devices: str | None) -> list[Gpu]:
    """Apply ``CUDA_VISIBLE_DEVICES`` (indices or UUIDs; empty or ``-1`` hides every GPU)."""
    if cuda_visible_devices is None:
        return list(gpus)
    wanted = [part.strip() for part in cuda_visible_devices.split(",") if part.strip()]
    chosen: list[Gpu] = []
    for token in wanted:
        if token.lstrip("-").isdigit():
            index = int(token)
            if index < 0:
                break  # CUDA stops at the first invalid entry
            match = next((g for g in gpus if g.index == index), None)
        else:
            match = next((g for g in gpus if g.uuid and g.uuid.startswith(token)), None)
        if match is None:
            break
        chosen.append(match)
    return chosen


def detect_gpus(environ: Mapping[str, str] | None = None) -> list[Gpu]:
    """The GPUs this process may use: ``nvidia-smi -L`` filtered by ``CUDA_VISIBLE_DEVICES``."""
    env = os.environ if environ is None else environ
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return []
    if out.returncode != 0:
        return []
    return visible(parse_nvidia_smi(out.stdout), env.get("CUDA_VISIBLE_DEVICES"))


@dataclass(frozen=True)
class WorkerPlan:
    """How ``trainyard worker`` runs: how many training processes, and the GPUs of each pool child."""

    concurrency: int
    gpus: tuple[Gpu, ...]
    per_gpu: bool
    cpu_count: int

    @property
    def env(self) -> dict[str, str]:
        """Environment the worker's processes need for this plan."""
        env = {"TF_FORCE_GPU_ALLOW_GROWTH": "true"}
        if self.per_gpu and self.gpus:
            env[PIN_GPUS_ENV] = ",".join(str(g.index) for g in self.gpus)
            env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"  # nvidia-smi's numbering
        return env

    def describe(self) -> str:
        """One line saying what will run, printed by ``trainyard worker``: how many training
        processes, and on which devices each trains (pinned ones follow ``child._pin_gpu``:
        pool process ``i`` gets GPU number ``i`` modulo the number of GPUs)."""
        n = self.concurrency
        if not self.gpus:
            return f"no GPU found: {_processes(n, 'CPU training')} ({self.cpu_count} cores)"
        count = len(self.gpus)
        found = f"{count} GPU{'s' if count > 1 else ''} [{', '.join(str(g) for g in self.gpus)}]"
        if count == 1:
            if n == 1:
                return f"{found}: one training process, single-device training"
            return f"{found}: {n} training processes sharing it, each with single-device training"
        if not self.per_gpu:
            if n == 1:
                return f"{found}: one training process over all of them with MirroredStrategy"
            return f"{found}: {n} training processes sharing all of them, each with MirroredStrategy over all {count}"
        if n == count:
            return f"{found}: one training process per GPU, each pinned to its own"
        labels = [f"gpu:{g.index}" for g in self.gpus]
        if n < count:
            used, unused = ", ".join(labels[:n]), ", ".join(labels[n:])
            return f"{found}: {_processes(n, 'training')} pinned to {used}; {unused} unused"
        shares = ", ".join(f"{len(range(i, n, count))} on {label}" for i, label in enumerate(labels))
        return f"{found}: {n} training processes pinned in turn: {shares}"


def default_cpu_concurrency(cpu_count: int) -> int:
    """Training processes for a CPU-only host: TensorFlow uses several cores per training, so one per 4 cores."""
    return max(1, cpu_count // 4)


def plan_worker(
    gpus: list[Gpu],
    cpu_count: int | None = None,
    *,
    per_gpu: bool = False,
    concurrency: int | None = None,
) -> WorkerPlan:
    """Choose the concurrency for this host (``concurrency`` overrides the choice)."""
    cores = cpu_count or os.cpu_count() or 1
    if concurrency is not None and concurrency < 1:
        from trainyard.errors import TrainyardError

        raise TrainyardError(f"--concurrency: expected a positive integer, received {concurrency}")
    if gpus:
        use_per_gpu = per_gpu and len(gpus) > 1
        chosen = len(gpus) if use_per_gpu else 1
    else:
        use_per_gpu = False
        chosen = default_cpu_concurrency(cores)
    return WorkerPlan(
        concurrency=concurrency or chosen,
        gpus=tuple(gpus),
        per_gpu=use_per_gpu,
        cpu_count=cores,
    )


def _processes(n: int, kind: str) -> str:
    """``one training process`` or ``3 training processes``."""
    return f"one {kind} process" if n == 1 else f"{n} {kind} processes"


def device_names(gpus: list[Gpu] | tuple[Gpu, ...]) -> list[str]:
    """Device labels for the worker heartbeat: the GPUs, or ``["cpu"]``."""
    return [str(g) for g in gpus] or ["cpu"]
