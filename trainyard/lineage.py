"""What produced a job: the software, the machine, the spec and its git state, the data.

Recorded twice, because the two can differ: once by the submitter (:func:`at_submit`, kept in the
job's context) and once by the worker that trains it (:func:`at_worker`, kept beside the job), and
written with the spec and the metrics into the ``model.json`` card beside each ``model.keras``
(:func:`model_inputs` reads the model's inputs from the file itself). Pure standard library: the
versions come from the installed distributions' metadata, so nothing here imports TensorFlow, and
git is asked through its command line (a missing ``git`` or a folder outside any repository
records no git state; it is never an error).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
import zipfile
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

#: The distributions whose versions a job records, by the key they are recorded under.
DISTRIBUTIONS = {"trainyard": "trainyard", "tensorflow": "tensorflow", "keras": "keras"}

#: Longest wait for one ``git`` command (a repository on a slow network disk must not stall a submit).
GIT_TIMEOUT_SECONDS = 10.0


def versions() -> dict[str, str | None]:
    """``{"trainyard", "tensorflow", "keras", "python"}``: the installed versions (None: not installed)."""
    found: dict[str, str | None] = {}
    for key, distribution in DISTRIBUTIONS.items():
        try:
            found[key] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            found[key] = None
    found["python"] = platform.python_version()
    return found


def machine() -> dict[str, str]:
    """The host this process runs on: its name, operating system and processor architecture."""
    return {"host": socket.gethostname(), "platform": platform.platform(terse=True), "machine": platform.machine()}


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class GitCache:
    """Git states of repositories, each asked once: a submit of many spec files in one repository
    runs ``git`` three times, not three times per file."""

    def __init__(self) -> None:
        self._roots: dict[Path, Path | None] = {}
        self._repos: dict[Path, dict[str, Any]] = {}

    def state(self, path: str | os.PathLike[str]) -> dict[str, Any] | None:
        """The git state of the repository holding the file at ``path``, None outside any repository:
        ``{"repository", "path", "commit", "dirty", "committed"}``. ``commit`` is HEAD (None in a
        repository without commits), ``dirty`` whether tracked files have uncommitted changes,
        ``committed`` whether this file is in HEAD exactly as it is on disk."""
        file = Path(path).resolve()
        folder = file.parent
        if folder not in self._roots:
            top = _git(folder, "rev-parse", "--show-toplevel")
            self._roots[folder] = Path(top.strip()).resolve() if top else None
        root = self._roots[folder]
        if root is None:
            return None
        repo = self._repos.get(root)
        if repo is None:
            repo = self._repos[root] = _repository(root)
        relative = file.relative_to(root).as_posix() if file.is_relative_to(root) else str(file)
        changed = repo["changed"]
        committed = (
            repo["commit"] is not None
            and relative in repo["tracked"]
            and relative not in changed
            and not any(entry.endswith("/") and relative.startswith(entry) for entry in changed)
        )
        return {
            "repository": str(root),
            "path": relative,
            "commit": repo["commit"],
            "dirty": repo["dirty"],
            "committed": committed,
        }


def git_state(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """:meth:`GitCache.state` of one file."""
    return GitCache().state(path)


def _repository(root: Path) -> dict[str, Any]:
    head = _git(root, "rev-parse", "--verify", "-q", "HEAD")
    status = _git(root, "status", "--porcelain=v1", "-z", "--untracked-files=normal") or ""
    changed: set[str] = set()
    dirty = False
    entries = status.split("\0")
    index = 0
    while index < len(entries):
        entry = entries[index]
        index += 1
        if len(entry) < 4:
            continue
        code, name = entry[:2], entry[3:]
        changed.add(name)
        if code != "??":
            dirty = True
        if code[0] in "RC":  # a rename or copy: the next entry is its source
            changed.add(entries[index])
            index += 1
    tracked = set((_git(root, "ls-files", "-z") or "").split("\0")) - {""}
    return {"commit": head.strip() if head else None, "dirty": dirty, "changed": changed, "tracked": tracked}


def _git(folder: Path, *args: str) -> str | None:
    """The output of ``git -C folder args...``, None when git is missing, fails or takes too long."""
    try:
        done = subprocess.run(
            ["git", "-C", str(folder), *args],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_SECONDS,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"},
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def at_submit(
    *,
    spec_sha256: str,
    data_fingerprint: str | None,
    source: str | os.PathLike[str] | None = None,
    git: GitCache | None = None,
) -> dict[str, Any]:
    """The submitter's record of a job: versions, host, the spec document's sha256, the data
    fingerprint and, when the spec came from a file, that file, its sha256 and its git state."""
    record: dict[str, Any] = {
        **versions(),
        **machine(),
        "spec_sha256": spec_sha256,
        "data_fingerprint": data_fingerprint,
    }
    path = Path(source) if source is not None else None
    if path is not None and path.is_file():
        record["spec_file"] = str(path.resolve())
        record["spec_file_sha256"] = file_sha256(path)
        record["git"] = (git or GitCache()).state(path)
    return record


def at_worker(*, devices: list[str], strategy: str, replicas: int, owner: str) -> dict[str, Any]:
    """The training worker's record of a job: versions, host, the devices it trained on, the
    ``tf.distribute`` strategy (``none``: one device, no strategy) and its replicas, the lease owner."""
    return {
        **versions(),
        **machine(),
        "devices": list(devices),
        "strategy": strategy,
        "replicas": replicas,
        "worker": owner,
        "executable": sys.executable,
    }


def model_inputs(model_file: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The inputs of a saved ``.keras`` model, read from the file's own config (no TensorFlow):
    ``[{"name", "dtype", "shape"}]`` in the model's input order. Empty when the file holds no
    functional model config."""
    with zipfile.ZipFile(model_file) as archive:
        config = json.loads(archive.read("config.json"))
    inner = config.get("config", {}) if isinstance(config, Mapping) else {}
    layers = {
        layer.get("config", {}).get("name"): layer.get("config", {})
        for layer in inner.get("layers", [])
        if isinstance(layer, Mapping) and layer.get("class_name") == "InputLayer"
    }
    order = inner.get("input_layers", [])
    if isinstance(order, Mapping):  # one input: a single [name, 0, 0] entry or a mapping of them
        order = list(order.values())
    if order and isinstance(order[0], str):
        order = [order]
    names = [entry[0] for entry in order if isinstance(entry, list) and entry] or list(layers)
    inputs = []
    for name in names:
        layer = layers.get(name, {})
        dtype = layer.get("dtype")
        if isinstance(dtype, Mapping):  # a serialised DTypePolicy
            dtype = dtype.get("config", {}).get("name", dtype)
        shape = layer.get("batch_shape") or layer.get("batch_input_shape")
        inputs.append({"name": name, "dtype": dtype, "shape": list(shape) if shape is not None else None})
    return inputs
