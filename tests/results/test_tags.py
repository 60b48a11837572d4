"""Tags: from a spec's ``tags`` and ``submit --tag``, stored one row per tag, selecting jobs in
``jobs``, ``dashboard`` and the store, on every backend."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from trainyard.cli import main
from trainyard.db import JobState, Store, Submission

REPO = Path(__file__).resolve().parents[2]
MLP = REPO / "specs" / "mlp.yaml"


@pytest.fixture
def store_url(home: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("TRAINYARD_DB_URL", db_url)
    return db_url


def cli(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def tagged_spec(folder: Path, tags: str) -> Path:
    path = folder / "tagged.yaml"
    path.write_text(MLP.read_text() + f"tags: {tags}\n")
    return path


def test_spec_tags_and_submit_tags_select_the_jobs_in_jobs_and_dashboard(store_url: str, tmp_path: Path) -> None:
    spec = tagged_spec(tmp_path, "[cal, baseline]")
    first = cli("submit", spec, "--tag", "lr=0.1", "--tag", "cal", "--json", "--no-dispatch")
    assert first.exit_code == 0, first.output
    plain = cli("submit", MLP, "--json", "--no-dispatch")
    assert plain.exit_code == 0, plain.output
    (tagged,) = json.loads(first.stdout)
    (untagged,) = json.loads(plain.stdout)
    assert tagged["tags"] == ["baseline", "cal", "lr=0.1"] and untagged["tags"] == []

    listed = json.loads(cli("jobs", "--tag", "cal", "--json").stdout)
    assert [job["id"] for job in listed] == [tagged["id"]]
    assert json.loads(cli("jobs", "--tag", "nothing", "--json").stdout) == []
    assert "baseline cal lr=0.1" in cli("jobs").stdout  # the TAGS column

    frame = json.loads(cli("dashboard", "--tag", "baseline", "--json").stdout)
    assert frame["queue"]["counts"]["queued"] == 1 and "tagged baseline" in frame["source"]
    frame = json.loads(cli("dashboard", "--json").stdout)
    assert frame["queue"]["counts"]["queued"] == 2
    Store.open(store_url).request_cancel(tagged["id"])  # finished: the frame lists it with its tags
    (recent,) = [job for job in json.loads(cli("dashboard", "--json").stdout)["recent"] if job["id"] == tagged["id"]]
    assert recent["tags"] == ["baseline", "cal", "lr=0.1"]

    shown = json.loads(cli("show", str(tagged["id"]), "--json").stdout)
    assert shown["tags"] == ["baseline", "cal", "lr=0.1"]
    assert "tags" not in shown["spec"]  # tags label the job; the spec document is what trains


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tag", "has space"], "--tag 'has space': expected letters, digits"),
        (["--tag", "x" * 65], "expected at most 64 characters, received 65"),
    ],
)
def test_a_bad_tag_is_one_line_exit_2_and_nothing_stored(store_url: str, args: list[str], message: str) -> None:
    result = cli("submit", MLP, *args, "--no-dispatch")
    assert result.exit_code == 2 and message in result.stderr, result.output
    assert "Traceback" not in result.output
    assert Store.open(store_url).list_jobs() == []


def test_a_bad_tag_in_a_spec_names_its_path(store_url: str, tmp_path: Path) -> None:
    result = cli("submit", tagged_spec(tmp_path, "[ok, 'no good']"), "--no-dispatch")
    assert result.exit_code == 2 and "tags[1]: expected letters, digits" in result.stderr, result.output
    assert Store.open(store_url).list_jobs() == []


def test_tags_are_rows_counted_and_deleted_with_their_job(db_url: str) -> None:
    store = Store.open(db_url)
    spec = {"name": "m", "training": {"epochs": 1}}
    jobs = store.add_jobs([Submission(spec=spec, tags=("b", "a", "b")), Submission(spec=spec, tags=("a",))])
    assert [job.tags for job in jobs] == [("a", "b"), ("a",)]
    assert store.count_by_state(tag="a")[JobState.QUEUED] == 2
    assert store.count_by_state(tag="b")[JobState.QUEUED] == 1
    assert [job.id for job in store.list_jobs(tag="b")] == [jobs[0].id]
    assert store.get_job(jobs[0].id).tags == ("a", "b")
    store.request_cancel(jobs[0].id)
    assert [job.id for job in store.delete_jobs([jobs[0].id])] == [jobs[0].id]
    assert store.count_by_state(tag="b")[JobState.CANCELLED] == 0
    assert [job.id for job in store.list_jobs(tag="a")] == [jobs[1].id]
