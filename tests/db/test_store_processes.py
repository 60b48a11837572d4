"""Several real processes on one store: concurrent submits and concurrent claims, no lock errors."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from trainyard.db import JobState, Store

# Each child imports first, says it is ready, waits for the go file, then works: so the children
# really overlap, including the first open of a fresh database (schema creation) on SQLite.
CHILD = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from trainyard.db import Store

    url, sync, me, task, count = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
    (sync / f"ready-{me}").touch()
    while not (sync / "go").exists():
        time.sleep(0.01)
    store = Store.open(url)
    done = []
    if task == "submit":
        for i in range(count):
            # Every tenth job uses the same spec in every process: they race to store it once.
            doc = {"name": "shared", "training": {"epochs": 2}} if i % 10 == 0 else {"name": f"{me}-{i}", "training": {"epochs": 2}}
            done += [job.id for job in store.add_jobs([doc])]
    else:
        while (job := store.claim_next(me)) is not None:
            done.append(job.id)
    print(json.dumps(done))
    """
)


def run_children(url: str, tmp_path: Path, task: str, processes: int, count: int = 0) -> list[list[int]]:
    sync = tmp_path / f"sync-{task}"
    sync.mkdir()
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, url, str(sync), f"p{n}", task, str(count)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(processes)
    ]
    while len(list(sync.glob("ready-*"))) < processes and all(c.poll() is None for c in children):
        time.sleep(0.05)
    (sync / "go").touch()
    results = []
    for child in children:
        out, err = child.communicate(timeout=300)
        assert child.returncode == 0, err
        assert "locked" not in err, err
        results.append(json.loads(out))
    return results


def test_eight_processes_submitting_fifty_jobs_each_store_all_400(db_url: str, tmp_path: Path) -> None:
    results = run_children(db_url, tmp_path, "submit", processes=8, count=50)

    ids = [job_id for per_process in results for job_id in per_process]
    assert len(ids) == len(set(ids)) == 400
    store = Store.open(db_url)
    assert store.count_by_state()[JobState.QUEUED] == 400
    jobs = store.list_jobs()
    assert sorted(job.name for job in jobs) == sorted(
        "shared" if i % 10 == 0 else f"p{n}-{i}" for n in range(8) for i in range(50)
    )
    shared_specs = {job.spec_id for job in jobs if job.name == "shared"}
    assert len(shared_specs) == 1  # stored once, whoever won the race
    assert len({job.spec_id for job in jobs}) == 8 * 45 + 1


def test_processes_claiming_at_once_take_every_job_exactly_once(db_url: str, tmp_path: Path) -> None:
    store = Store.open(db_url)
    queued = store.add_jobs([{"name": f"j{i}", "training": {"epochs": 1}} for i in range(120)])

    results = run_children(db_url, tmp_path, "claim", processes=4)

    claimed = [job_id for per_process in results for job_id in per_process]
    assert sorted(claimed) == sorted(job.id for job in queued)
    assert store.count_by_state()[JobState.RUNNING] == 120
    owners = {job.id: job.lease_owner for job in store.list_jobs()}
    for n, per_process in enumerate(results):
        assert all(owners[job_id] == f"p{n}" for job_id in per_process)


# Holds a write transaction on a SQLite file still in rollback-journal mode for a second.
WRITER = textwrap.dedent(
    """
    import sqlite3, sys, time
    connection = sqlite3.connect(sys.argv[1], isolation_level=None)
    connection.execute("CREATE TABLE IF NOT EXISTS other_program (x)")
    connection.execute("BEGIN IMMEDIATE")
    connection.execute("INSERT INTO other_program VALUES (1)")
    print("writing", flush=True)
    time.sleep(1.0)
    connection.execute("COMMIT")
    """
)


def test_a_file_another_process_is_writing_is_opened_once_it_is_done(home: Path) -> None:
    """While another connection holds a write lock, SQLite refuses the switch to WAL journal mode
    at once, without waiting out its busy timeout ("database is locked": how a worker and
    ``trainyard run`` opening a fresh embedded broker together once failed). The job store and the
    embedded broker both wait for the writer instead."""
    from trainyard.config import Settings
    from trainyard.queue import queue_size, send_slots

    settings = Settings.from_env()
    opens = {
        home / "jobs.sqlite": lambda path: Store.open(f"sqlite:///{path}").add_jobs([{"name": "a"}]),
        home / "broker.sqlite": lambda _path: send_slots([1], settings),
    }
    for path, open_and_write in opens.items():
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
        assert writer.stdout is not None and writer.stdout.readline().strip() == "writing"
        open_and_write(path)  # the writer goes on for about a second after saying so
        assert writer.wait(timeout=30) == 0
    assert queue_size(settings) == 1
