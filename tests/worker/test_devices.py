"""GPU detection without TensorFlow, and the pool/concurrency a worker picks from it."""

from __future__ import annotations

import os

import pytest

from trainyard.errors import TrainyardError
from trainyard.worker.devices import Gpu, parse_nvidia_smi, plan_worker, visible

NVIDIA_SMI = """\
GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-11111111-aaaa-bbbb-cccc-000000000000)
GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-22222222-aaaa-bbbb-cccc-000000000000)
  MIG 1g.5gb      Device  0: (UUID: MIG-33333333-aaaa-bbbb-cccc-000000000000)
GPU 2: Tesla T4 (UUID: GPU-44444444-aaaa-bbbb-cccc-000000000000)
"""


def test_parse_nvidia_smi_lists_gpus_not_mig_slices() -> None:
    gpus = parse_nvidia_smi(NVIDIA_SMI)
    assert [(g.index, g.name) for g in gpus] == [
        (0, "NVIDIA A100-SXM4-40GB"),
        (1, "NVIDIA A100-SXM4-40GB"),
        (2, "Tesla T4"),
    ]
    assert gpus[2].uuid == "GPU-44444444-aaaa-bbbb-cccc-000000000000"


@pytest.mark.parametrize(
    ("cuda_visible", "expected"),
    [
        (None, [0, 1, 2]),
        ("", []),
        ("-1", []),
        ("2,0", [2, 0]),
        ("1,7,2", [1]),  # CUDA stops at the first invalid entry
        ("GPU-4444", [2]),
    ],
)
def test_cuda_visible_devices_filters_and_orders(cuda_visible: str | None, expected: list[int]) -> None:
    assert [g.index for g in visible(parse_nvidia_smi(NVIDIA_SMI), cuda_visible)] == expected


def test_cpu_host_uses_a_few_processes() -> None:
    assert plan_worker([], cpu_count=2).concurrency == 1
    plan = plan_worker([], cpu_count=32)
    assert (plan.concurrency, plan.per_gpu) == (8, False)


def test_several_gpus_default_to_one_mirrored_process_or_one_per_gpu() -> None:
    gpus = [Gpu(0, "A100"), Gpu(1, "A100")]
    mirrored = plan_worker(gpus, cpu_count=16)
    assert (mirrored.concurrency, mirrored.per_gpu) == (1, False)
    assert mirrored.env["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"
    per_gpu = plan_worker(gpus, cpu_count=16, per_gpu=True)
    assert (per_gpu.concurrency, per_gpu.per_gpu) == (2, True)
    assert per_gpu.env["TRAINYARD_PIN_GPUS"] == "0,1"


def test_one_gpu_trains_on_a_single_device_even_with_per_gpu() -> None:
    plan = plan_worker([Gpu(0, "T4")], cpu_count=8, per_gpu=True)
    assert (plan.concurrency, plan.per_gpu) == (1, False)
    assert "TRAINYARD_PIN_GPUS" not in plan.env


T4 = [Gpu(0, "T4")]
TWO = [Gpu(0, "A100"), Gpu(1, "A100")]
THREE = [Gpu(0, "A100"), Gpu(1, "A100"), Gpu(2, "T4")]
TWO_NAMES = "2 GPUs [gpu:0 A100, gpu:1 A100]"
THREE_NAMES = "3 GPUs [gpu:0 A100, gpu:1 A100, gpu:2 T4]"


@pytest.mark.parametrize(
    ("gpus", "per_gpu", "concurrency", "sentence"),
    [
        ([], False, None, "no GPU found: 2 CPU training processes (8 cores)"),
        ([], False, 1, "no GPU found: one CPU training process (8 cores)"),
        ([], True, 3, "no GPU found: 3 CPU training processes (8 cores)"),
        (T4, False, None, "1 GPU [gpu:0 T4]: one training process, single-device training"),
        (T4, True, None, "1 GPU [gpu:0 T4]: one training process, single-device training"),
        (T4, False, 2, "1 GPU [gpu:0 T4]: 2 training processes sharing it, each with single-device training"),
        (T4, True, 2, "1 GPU [gpu:0 T4]: 2 training processes sharing it, each with single-device training"),
        (TWO, False, None, f"{TWO_NAMES}: one training process over all of them with MirroredStrategy"),
        (
            TWO,
            False,
            3,
            f"{TWO_NAMES}: 3 training processes sharing all of them, each with MirroredStrategy over all 2",
        ),
        (TWO, True, None, f"{TWO_NAMES}: one training process per GPU, each pinned to its own"),
        (TWO, True, 2, f"{TWO_NAMES}: one training process per GPU, each pinned to its own"),
        (TWO, True, 1, f"{TWO_NAMES}: one training process pinned to gpu:0; gpu:1 unused"),
        (THREE, True, 2, f"{THREE_NAMES}: 2 training processes pinned to gpu:0, gpu:1; gpu:2 unused"),
        (TWO, True, 5, f"{TWO_NAMES}: 5 training processes pinned in turn: 3 on gpu:0, 2 on gpu:1"),
    ],
)
def test_describe_says_what_will_really_run(
    gpus: list[Gpu], per_gpu: bool, concurrency: int | None, sentence: str
) -> None:
    assert plan_worker(gpus, cpu_count=8, per_gpu=per_gpu, concurrency=concurrency).describe() == sentence


def test_pinned_processes_get_the_gpus_describe_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """``describe`` of five processes on two pinned GPUs matches what each pool child is given."""
    from billiard.process import current_process

    from trainyard.worker import child

    plan = plan_worker(TWO, cpu_count=8, per_gpu=True, concurrency=5)
    for key, value in plan.env.items():
        monkeypatch.setenv(key, value)
    seen = []
    for index in range(plan.concurrency):
        monkeypatch.setattr(current_process(), "index", index, raising=False)
        child._pin_gpu()
        seen.append(os.environ["CUDA_VISIBLE_DEVICES"])
    assert (seen.count("0"), seen.count("1")) == (3, 2)
    assert plan.describe().endswith("3 on gpu:0, 2 on gpu:1")


def test_concurrency_override_and_its_validation() -> None:
    assert plan_worker([], cpu_count=2, concurrency=3).concurrency == 3
    with pytest.raises(TrainyardError, match="received 0"):
        plan_worker([], cpu_count=2, concurrency=0)


def test_per_gpu_pins_each_pool_child_to_its_own_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from billiard.process import current_process

    from trainyard.worker import child

    monkeypatch.setenv("TRAINYARD_PIN_GPUS", "3,5")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "all-of-them")
    seen = []
    for index in (0, 1, 2):
        monkeypatch.setattr(current_process(), "index", index, raising=False)
        child._pin_gpu()
        seen.append(os.environ["CUDA_VISIBLE_DEVICES"])
    assert seen == ["3", "5", "3"]
