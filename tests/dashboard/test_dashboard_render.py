"""Frames of hand-built snapshots, read as text: every section, lost workers, empty store, narrow terminal."""

from __future__ import annotations

import math
import re

import pytest
from dashboard_builders import NOW, ago, make_epochs, make_job, print_to_text

from trainyard.dashboard.render import NARROW_WIDTH, render, sparkline
from trainyard.dashboard.snapshot import RunningJob, Snapshot
from trainyard.db.records import EpochRecord, JobState, WorkerRecord, WorkerState
from trainyard.display import format_duration, format_mse, progress_bar


def line_with(text: str, needle: str) -> str:
    lines = [line for line in text.splitlines() if needle in line]
    assert lines, f"{needle!r} not in frame:\n{text}"
    return lines[0]


def following(text: str, needle: str, count: int) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if needle in line)
    return lines[start : start + count]


def flat(text: str) -> str:
    return " ".join(text.split())


def test_queue_shows_counts_per_state_and_the_oldest_wait(busy_snapshot, frame_text):
    line = line_with(frame_text(busy_snapshot), "Queue")
    for piece in ("queued 5 (oldest waiting 4m12s)", "running 2", "succeeded 1", "failed 1", "cancelled 0", "total 9"):
        assert piece in line


def test_workers_show_host_devices_job_and_heartbeat_and_a_silent_worker_is_lost(busy_snapshot, frame_text):
    text = frame_text(busy_snapshot)
    alpha = line_with(text, "alpha ")
    assert re.search(r"alpha\s+gpu-box\s+/gpu:0, /gpu:1\s+busy\s+#3\s+2s ago", alpha), alpha
    gamma = line_with(text, "gamma")
    assert re.search(r"gamma\s+old-box\s+/cpu:0\s+lost\s+–\s+1m35s ago", gamma), gamma
    assert "lost" not in alpha


def test_a_cleanly_stopped_worker_is_not_lost(frame_text):
    stopped = WorkerRecord("delta", "box", [], WorkerState.STOPPED, None, ago(9000), ago(3000))
    text = frame_text(Snapshot(taken_at=NOW, source="db", workers=(stopped,)))
    row = line_with(text, "delta")
    assert "stopped" in row and "lost" not in row


def test_running_jobs_show_progress_timing_and_every_outputs_val_mse(busy_snapshot, frame_text):
    text = frame_text(busy_snapshot, width=160)
    main, aux = following(text, "#3 wide_and_deep", 2)
    assert re.search(r"#3 wide_and_deep\s+alpha\s+━+─+ 7/20\s+1m20s\s+2m00s\s+main\s+0\.4429\s+0\.4321\s+\S+", main), (
        main
    )
    assert re.search(r"^\s+aux\s+0\.7857\s+0\.7857\s+\S+", aux), aux
    # the trend falls over the epochs: the first block is the highest, the last ones low
    spark = main.split()[-1]
    assert len(spark) == 7 and spark[0] == "█" and spark[-1] in "▁▂"
    fresh = line_with(text, "#4 mlp")
    assert re.search(r"#4 mlp\s+beta\s+─+ 0/5\s+5s\s+–", fresh), fresh


def test_recently_finished_show_state_duration_mse_and_the_error_line(busy_snapshot, frame_text):
    text = frame_text(busy_snapshot, width=160)
    main, aux = following(text, "#2 multi_output", 2)
    assert re.search(r"#2 multi_output\s+succeeded\s+5m00s ago\s+5m00s\s+main\s+0\.4123\s+0\.4301", main), main
    assert re.search(r"aux\s+0\.5123\s+0\.5402", aux), aux
    failed, error = following(text, "#1 multi_input", 2)
    assert re.search(r"failed\s+11m40s ago\s+1m40s\s+price\s+nan\s+–", failed), failed
    assert "trainyard.errors.TrainingError: epoch 7: loss is nan" in error
    assert "Traceback" not in text


def test_an_empty_store_says_so_in_every_section(frame_text):
    text = frame_text(Snapshot(taken_at=NOW, source="sqlite:////tmp/x.sqlite"))
    assert "queued 0" in text and "total 0" in text and "oldest waiting" not in text
    assert "No jobs in the store yet" in text
    assert "Workers: none has sent a heartbeat yet (start one with `trainyard worker`)." in text
    assert "Running: no job is running." in text
    assert "Recently finished: none yet." in text


@pytest.mark.parametrize("width", [40, 60, 80, NARROW_WIDTH - 1, NARROW_WIDTH, 200])
def test_every_width_keeps_lines_inside_the_terminal_and_every_number_whole(busy_snapshot, frame_text, width):
    text = frame_text(busy_snapshot, width=width)
    assert max(len(line) for line in text.splitlines()) <= width
    words = set(text.split())
    for value in ("0.4429", "0.4321", "0.7857", "0.4123", "0.5123", "0.4301", "0.5402", "7/20", "0/5"):
        assert value in words, (value, text)
    assert "lost" in words


def test_a_narrow_terminal_stacks_each_job_with_its_outputs_below(busy_snapshot, frame_text):
    text = frame_text(busy_snapshot, width=60)
    head = following(text, "#3 wide_and_deep", 1)[0]
    assert "on alpha" in head and "epoch 7/20" in head
    assert "ETA 2m00s" in flat(text)
    main = line_with(text, "  main   ")
    assert re.search(r"main\s+0\.4429\s+0\.4321", main), main
    finished = "\n".join(following(text, "#2 multi_output", 4))
    assert re.search(r"main\s+0\.4123\s+0\.4301", finished) and re.search(r"aux\s+0\.5123\s+0\.5402", finished)
    assert "TrainingError: epoch 7: loss is nan" in flat(text)


def test_more_running_jobs_than_read_are_counted(busy_snapshot, frame_text):
    crowded = Snapshot(
        taken_at=NOW,
        source="db",
        counts={JobState.RUNNING: 12},
        running=busy_snapshot.running,
    )
    assert "and 10 more running jobs not shown" in flat(frame_text(crowded))
    assert "and 10 more running jobs not shown" in flat(frame_text(crowded, width=60))


def test_a_store_problem_is_shown_above_the_last_frame(busy_snapshot, frame_text):
    text = frame_text(busy_snapshot, problem="cannot reach the job store at postgresql://db/x")
    assert "cannot reach the job store at postgresql://db/x (showing the last frame, retrying)" in text
    assert "#3 wide_and_deep" in text


def test_eta_uses_the_pace_of_the_epochs_so_far():
    job = make_job(9, "m", JobState.RUNNING, epochs_total=10, epochs_done=4, started_at=ago(100))
    running = RunningJob(job, make_epochs(9, {"y": [4.0, 3.0, 2.0, 1.0]}, first_at=90, seconds_each=20))
    assert running.seconds_per_epoch() == pytest.approx(20.0)
    # 6 epochs left at 20 s, the last one ended 30 s ago
    assert running.eta_seconds(NOW) == pytest.approx(6 * 20 - 30)
    assert RunningJob(job, ()).eta_seconds(NOW) is None


def test_sparkline_scales_between_min_and_max_and_leaves_gaps_for_unknown_values():
    assert sparkline([8.0, 4.0, 2.0, 1.0], 10) == "█▄▂▁"
    assert sparkline([1.0, None, float("nan"), 3.0], 10) == "▁  █"
    assert sparkline([5.0, 5.0], 10) == "▄▄"
    assert sparkline(list(range(30)), 5) == "▁▃▅▆█"  # only the last values that fit
    assert sparkline([], 5) == "" and sparkline([None], 5) == " "


def test_number_formats():
    assert format_mse(0.412345) == "0.4123"
    assert format_mse(12345.678) == "12346" and format_mse(5607.4) == "5607" and format_mse(999.96) == "1000"
    assert format_mse(1.5e8) == "1.5e+08" and format_mse(0.000123456) == "0.0001235"
    assert format_mse(None) == "–" and format_mse(math.nan) == "nan" and format_mse(math.inf) == "inf"
    assert [format_duration(s) for s in (0, 42, 185, 7620, 273600)] == ["0s", "42s", "3m05s", "2h07m", "3d04h"]
    assert progress_bar(7, 20, 10).plain == "━━━━──────"
    assert progress_bar(25, 20, 4).plain == "━━━━" and progress_bar(0, 0, 4).plain == "────"


def test_eta_of_a_resumed_job_ignores_the_epochs_of_its_earlier_run():
    # epochs 1-3 ran an hour ago on a worker that was lost; the job restarted 50 s ago and has
    # done epochs 4 and 5 since, 20 s apart
    earlier = make_epochs(9, {"y": [4.0, 3.0, 2.0]}, first_at=3600, seconds_each=10)
    since = tuple(
        EpochRecord(9, epoch, 1.0, 1.1, {"y": {"loss": 1.0, "val_mse": 1.1}}, ago(seconds))
        for epoch, seconds in ((4, 40), (5, 20))
    )
    job = make_job(9, "m", JobState.RUNNING, attempts=2, epochs_total=10, epochs_done=5, started_at=ago(50))
    resumed = RunningJob(job, earlier + since)
    assert resumed.seconds_per_epoch() == pytest.approx(20.0)
    assert resumed.eta_seconds(NOW) == pytest.approx(5 * 20 - 20)
    only_one = RunningJob(job, earlier + since[:1])
    assert only_one.seconds_per_epoch() == pytest.approx(10.0)  # epoch 4 ended 10 s after the restart


@pytest.mark.parametrize("width", [60, 160])
def test_a_second_attempt_and_a_pending_cancel_are_shown_with_the_running_job(frame_text, width):
    job = make_job(
        5, "retrying", JobState.RUNNING, attempts=2, max_attempts=3, cancel_requested=True, started_at=ago(9)
    )
    text = flat(frame_text(Snapshot(taken_at=NOW, source="db", running=(RunningJob(job),)), width=width))
    assert "#5 retrying (attempt 2 of 3, cancelling)" in text
    first = make_job(6, "fresh", JobState.RUNNING, started_at=ago(9))
    assert "#6 fresh (" not in flat(
        frame_text(Snapshot(taken_at=NOW, source="db", running=(RunningJob(first),)), width=width)
    )


def test_classification_outputs_show_their_headline_metric_named_running_and_finished(frame_text):
    def epoch(i: int, log_loss: float) -> EpochRecord:
        metrics = {"log_loss": log_loss, "accuracy": 0.9}
        return EpochRecord(
            job_id=5,
            epoch=i,
            loss=log_loss,
            val_loss=log_loss,
            outputs={"species": {"loss": log_loss, "val_metrics": metrics}},
            recorded_at=ago(30 - i),
        )

    running = RunningJob(
        make_job(5, "iris", JobState.RUNNING, epochs_done=3, started_at=ago(40)),
        (epoch(1, 0.91), epoch(2, 0.52), epoch(3, 0.61)),
    )
    finished = make_job(
        6,
        "cancer",
        JobState.SUCCEEDED,
        finished_at=ago(60),
        started_at=ago(100),
        val_metrics={"flag": {"log_loss": 0.1402, "accuracy": 0.947, "auc": 0.988}},
        test_metrics={"flag": {"log_loss": 0.1555, "accuracy": 0.93, "auc": 0.98}},
    )
    snapshot = Snapshot(taken_at=NOW, source="db", running=(running,), recent=(finished,))
    for width in (160, 60):
        text = flat(frame_text(snapshot, width=width))
        assert "log loss 0.61" in text and "log loss 0.52" in text, text  # latest, then best
        assert "log loss 0.1402" in text and "log loss 0.1555" in text, text
        assert "val MSE" not in text and "test MSE" not in text, text
    outputs = snapshot.to_json()["running"][0]["outputs"]["species"]
    assert outputs["headline"] == "log_loss" and outputs["val_headline"] == 0.61
    assert outputs["best_val_headline"] == 0.52 and outputs["val_mse"] is None


def test_run_names_each_outputs_headline_metric_live_and_in_its_summary() -> None:
    from trainyard.cli.worker_cmds import progress_table, summary_table

    iris = make_job(
        1,
        "iris",
        JobState.SUCCEEDED,
        epochs_done=20,
        val_metrics={"species": {"log_loss": 0.0839, "accuracy": 0.97}},
        test_metrics={"species": {"log_loss": 0.0351, "accuracy": 0.97}},
    )
    mlp = make_job(
        2,
        "mlp",
        JobState.SUCCEEDED,
        epochs_done=20,
        val_mse={"output": 3137.0},
        test_mse={"output": 3623.0},
        val_metrics={"output": {"mse": 3137.0, "mae": 46.0}},
        test_metrics={"output": {"mse": 3623.0, "mae": 48.0}},
    )
    summary = print_to_text(summary_table([iris, mlp]), 120)
    assert "log loss 0.0839" in summary and "log loss 0.0351" in summary and "3137" in summary, summary
    assert "VAL MSE" not in summary
    live = print_to_text(progress_table([iris, mlp], NOW, 120), 120)
    assert "species log loss 0.0839" in live and "output MSE 3137" in live, live
    only_regression = print_to_text(summary_table([mlp]), 120)
    assert "VAL MSE" in only_regression and "TEST MSE" in only_regression


def crowded(running: int, finished: int) -> Snapshot:
    """``running`` two-output jobs in training and ``finished`` finished ones, newest first."""
    curves = {"main": [1.0, 0.8, 0.7], "aux": [2.0, 1.5, 1.2]}
    active = tuple(
        RunningJob(
            make_job(100 + i, f"run_{i}", JobState.RUNNING, epochs_done=3, started_at=ago(60), lease_owner="w"),
            make_epochs(100 + i, curves, first_at=40, seconds_each=10),
            "w",
        )
        for i in range(running)
    )
    recent = tuple(
        make_job(
            i,
            f"done_{i}",
            JobState.SUCCEEDED,
            epochs_done=20,
            started_at=ago(900 + i),
            finished_at=ago(300 + i),
            val_mse={"main": 0.4, "aux": 0.5},
            test_mse={"main": 0.41, "aux": 0.52},
        )
        for i in range(1, finished + 1)
    )
    counts = {JobState.RUNNING: running, JobState.SUCCEEDED: finished}
    return Snapshot(taken_at=NOW, source="db", counts=counts, running=active, recent=recent)


@pytest.mark.parametrize(("width", "heights"), [(160, (30, 24)), (80, (32, 28))])
def test_a_short_terminal_gets_a_frame_that_fits_the_oldest_finished_jobs_giving_way_first(width, heights):
    snapshot = crowded(running=3, finished=10)
    assert len(print_to_text(render(snapshot, NOW, width), width).splitlines()) > max(heights)
    for height in heights:
        text = print_to_text(render(snapshot, NOW, width, height=height), width)
        names = re.findall(r"#\d+ (run_\d+|done_\d+)", text)
        assert len(text.splitlines()) <= height, text
        assert names[:3] == ["run_0", "run_1", "run_2"], text  # every running job, whole
        shown = len(names) - 3
        assert 0 < shown < 10 and names[3:] == [f"done_{i}" for i in range(1, shown + 1)], text  # the newest
        assert f"and {10 - shown} more finished job{'s' if shown < 9 else ''} not shown" in text
    short = print_to_text(render(snapshot, NOW, width, height=14), width)
    assert len(short.splitlines()) <= 14, short
    assert "#100 run_0" in short and "done_" not in short  # the finished give way first, then running jobs
    assert "more running job" in short and "Recently finished: 10 job(s), not shown" in short


def test_a_frame_that_fits_is_the_whole_frame(busy_snapshot, frame_text):
    assert print_to_text(render(busy_snapshot, NOW, 160, height=200), 160) == frame_text(busy_snapshot)


def test_run_on_a_short_terminal_shows_the_jobs_still_training_and_counts_the_rest() -> None:
    from trainyard.cli.worker_cmds import progress_table, sweep_progress

    states = [JobState.SUCCEEDED] * 12 + [JobState.RUNNING] * 2 + [JobState.QUEUED] * 6
    jobs = [
        make_job(i + 1, f"spec_{i + 1}", state, epochs_done=20 * state.is_finished) for i, state in enumerate(states)
    ]
    assert len(print_to_text(progress_table(jobs, NOW, 100), 100).splitlines()) == 21  # a header and every job
    text = print_to_text(progress_table(jobs, NOW, 100, height=8), 100)
    ids = [int(line.split()[0]) for line in text.splitlines()[1:] if line.split()[0].isdigit()]
    assert len(text.splitlines()) <= 8, text
    assert ids == [13, 14, 15, 16, 17, 18], text  # the running, then the queued, in id order
    assert "and 14 more job(s) not shown (12 finished)" in text

    trials = [{"job": 30 + i, "state": "queued", "epochs": 0, "objective": None, "params": {"lr": i}} for i in range(9)]
    trials.append({"job": 50, "state": "running", "epochs": 3, "objective": 0.5, "params": {"lr": 0.1}})
    document = {
        "id": 1,
        "name": "s",
        "done": 0,
        "total": 10,
        "counts": {"running": 1, "pruned": 0},
        "best": None,
        "trials": trials,
    }
    text = print_to_text(sweep_progress(document, NOW, 100, height=6), 100)
    assert len(text.splitlines()) <= 6 and "50" in text and "running" in text, text
    assert "more trial(s) not shown" in text
