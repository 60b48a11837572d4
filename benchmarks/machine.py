"""What every benchmark prints first: the machine it ran on, and the workloads several of them share.

Figures from a shared, noisy machine mean little without it, so each script starts with
:func:`describe`. :func:`california_documents` gives the article's four architectures on California
housing (numeric columns without missing values, normalised inputs), the larger dataset the
issue asks for, as spec documents that ``trainyard submit``/``run`` and the training core accept.
"""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SPECS = REPO / "specs"
CALIFORNIA = REPO.parent / "shared" / "datasets" / "california_housing.csv"
#: Numeric columns of California housing without missing values (total_bedrooms has some).
CALIFORNIA_FEATURES = ["longitude", "latitude", "housing_median_age", "total_rooms", "population", "households"]
ARCHITECTURES = ("mlp", "wide_deep", "multi_input", "multi_output")


def describe() -> str:
    """One line: CPU model, cores, load, memory, Python, the libraries that matter."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = "load {:.2f}/{:.2f}/{:.2f}".format(*os.getloadavg())
    except OSError:
        load = "load ?"
    memory = ""
    try:
        import psutil

        memory = f", {psutil.virtual_memory().total / 2**30:.0f} GiB RAM"
    except ImportError:
        pass
    return (
        f"# machine: {cpu}, {os.cpu_count()} cores{memory}, {load} (shared with other engineers' tests: noisy), "
        f"{platform.system()} {platform.release()}, python {platform.python_version()}"
    )


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def california_documents(
    epochs: int, seeds: Iterable[int] = (42,), archs: Sequence[str] = ARCHITECTURES
) -> list[dict[str, Any]]:
    """The article's architectures on California housing, one document per (architecture, seed).

    Inputs are the numeric columns without missing values, normalised inside the model; the target is
    ``median_income``. Names are ``<arch>_ca_s<seed>`` so jobs tell apart in ``trainyard jobs``.
    """
    from trainyard.specs import load_spec

    documents = []
    for seed in seeds:
        for arch in archs:
            doc = load_spec(SPECS / f"{arch}.yaml", check_data=False).document()
            doc["name"] = f"{arch}_ca_s{seed}"
            doc["data"] = {"source": str(CALIFORNIA), "split": {"valid": 0.2, "test": 0.2, "seed": 42}}
            inputs = doc["inputs"]
            if set(inputs) == {"wide", "deep"}:
                inputs["wide"] = {**inputs["wide"], "columns": CALIFORNIA_FEATURES[:4], "normalize": True}
                inputs["deep"] = {**inputs["deep"], "columns": CALIFORNIA_FEATURES[2:], "normalize": True}
            else:
                (name,) = inputs
                inputs[name] = {**inputs[name], "columns": CALIFORNIA_FEATURES, "normalize": True}
            for out in doc["outputs"].values():
                out["target"] = "median_income"
            doc["training"] = {**doc["training"], "epochs": epochs, "seed": seed}
            documents.append(doc)
    return documents


def write_specs(documents: Iterable[dict[str, Any]], folder: Path) -> list[Path]:
    """Each document as a YAML spec file in ``folder`` (what a user would pass to ``trainyard``)."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for doc in documents:
        path = folder / f"{doc['name']}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        paths.append(path)
    return paths
