"""One command at a time per run directory: the lock module, a second command refused, a dead holder's lock taken over,
two `arc-kit predict --out` into one folder, `arc-kit run` against a held directory and after its holder died."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import assert_valid_submission, run_cli, simple_task, tiny_config, tiny_trm_config, write_task_dir
from test_bad_inputs import tree_state

from arc_kit.base.errors import ArcKitError
from arc_kit.run.directory import LOCK_FILE
from arc_kit.run.lock import LOCK_ENV, RunLock, is_locked, read_holder, stage_lock

ROOT = Path(__file__).resolve().parents[1]

# A process that holds OUT's lock until its stdin closes; it prints "held" once the lock is taken.
HOLDER = (
    "import sys; from arc_kit.run.lock import RunLock; "
    "lock = RunLock(sys.argv[1], 'test holder').acquire(); print('held', flush=True); sys.stdin.read(); lock.release()"
)


def start_holder(out: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(out)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def wait_until_held(out: Path, proc: subprocess.Popen) -> None:
    """Until `proc` has written itself into OUT's lock file (the flock is taken before the file is written)."""
    while not ((h := read_holder(out)) and h.pid == proc.pid):
        assert proc.poll() is None, "the first command ended before taking its lock"
        time.sleep(0.05)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


# ---------------------------------------------------------------- the lock module, in process


def test_lock_names_its_holder_refuses_a_second_and_is_gone_after_release(tmp_path, monkeypatch):
    monkeypatch.delenv(LOCK_ENV, raising=False)
    out = tmp_path / "run"
    before = time.time()
    first = RunLock(out, "arc-kit run").acquire()
    after = time.time()
    holder = json.loads((out / LOCK_FILE).read_text())
    assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
    assert holder["command"] == "arc-kit run" and before <= holder["started"] <= after  # stamped when taken
    assert os.environ[LOCK_ENV] == holder["token"]  # what the stage processes it starts inherit
    assert is_locked(out)
    with pytest.raises(ArcKitError) as e:  # another open of the file: flock refuses it even in this process
        RunLock(out, "arc-kit predict").acquire()
    msg = str(e.value)
    assert str(out) in msg and f"pid {os.getpid()}" in msg and socket.gethostname() in msg and "arc-kit run" in msg
    assert time.strftime("%Y-%m-%d", time.gmtime(holder["started"])) in msg  # the start time
    assert "\n" not in msg
    first.release()
    assert not (out / LOCK_FILE).exists() and not is_locked(out) and LOCK_ENV not in os.environ
    with RunLock(out, "arc-kit predict") as again:  # free again
        assert read_holder(out) == again.holder
    assert not out.exists()  # it made OUT and nothing was written there: removed again


def test_a_failed_start_leaves_no_directory_but_written_files_stay(tmp_path):
    with RunLock(tmp_path / "a" / "b", "arc-kit predict"):
        assert (tmp_path / "a" / "b" / LOCK_FILE).is_file()
    assert not (tmp_path / "a").exists()  # nothing was written: the directories it made are gone
    with RunLock(tmp_path / "c", "arc-kit predict"):
        (tmp_path / "c" / "predictions.jsonl").write_text("{}\n")
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["predictions.jsonl"]
    (tmp_path / "f").write_text("x")
    with pytest.raises(ArcKitError, match="not a directory"):
        RunLock(tmp_path / "f", "arc-kit run").acquire()


def test_a_lock_left_by_a_dead_process_is_taken_over_with_a_notice(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    dead = {"pid": 4_000_000, "host": "elsewhere", "started": 1.7e9, "command": "arc-kit run", "token": "x"}
    (out / LOCK_FILE).write_text(json.dumps(dead))  # no process holds its flock: the holder died
    with RunLock(out, "arc-kit run") as lock:
        assert lock.previous is not None and lock.previous.pid == 4_000_000
        assert read_holder(out).pid == os.getpid()
    notice = capsys.readouterr().err.strip().splitlines()
    assert len(notice) == 1 and notice[0].startswith("notice:") and "pid 4000000 on elsewhere" in notice[0]
    assert str(out) in notice[0] and "2023-11-14" in notice[0]  # the previous holder's start time
    assert not (out / LOCK_FILE).exists()


def test_a_stage_runs_under_its_parents_lock_and_refuses_a_stranger(tmp_path, monkeypatch):
    monkeypatch.delenv(LOCK_ENV, raising=False)
    out = tmp_path / "run"
    with RunLock(out, "arc-kit run"):
        assert stage_lock(out, "train") is None  # the token in the environment is the lock file's: our own
        monkeypatch.setenv(LOCK_ENV, "another run's token")
        with pytest.raises(ArcKitError, match="in use by another arc-kit command"):
            stage_lock(out, "train")
    monkeypatch.delenv(LOCK_ENV, raising=False)  # release restored the environment already
    own = stage_lock(out, "infer")  # started by hand: it holds a lock of its own
    assert own is not None and read_holder(out).command == "arc-kit stage infer"
    own.release()


def test_revote_and_simulate_refuse_a_held_directory_before_writing(tmp_path, capsys):
    from arc_kit.cli.main import main
    from arc_kit.kaggle.simulate import MARKER

    tasks = write_task_dir(tmp_path / "tasks", {"t0": simple_task(size=3)})
    line = {"task_id": "t0", "test_index": 0, "augmentation": "t0", "grid": [[1]], "q_halt": 1.0}
    (tmp_path / "p.jsonl").write_text(json.dumps(line) + "\n")
    out = tmp_path / "held"
    with RunLock(out, "arc-kit run"):
        (out / MARKER).touch()  # a folder `kaggle simulate` made earlier: it would reuse it
        before = tree_state(out)
        for argv in (
            ["revote", str(tmp_path / "p.jsonl"), "--tasks", str(tasks), "--configs", "reference", "-o", str(out)],
            ["kaggle", "simulate", "--tasks", "1", "--out", str(out)],
        ):
            capsys.readouterr()
            assert main(argv) == 2, argv
            errors = error_lines(capsys.readouterr().err)
            assert len(errors) == 1 and str(out) in errors[0] and f"pid {os.getpid()}" in errors[0], errors
            assert tree_state(out) == before
    rc = main(["revote", str(tmp_path / "p.jsonl"), "--tasks", str(tasks), "--configs", "reference", "-o", str(out)])
    assert rc == 0 and (out / "reference" / "submission.json").is_file() and not (out / LOCK_FILE).exists()


# ---------------------------------------------------------------- real concurrent commands


@pytest.mark.e2e
def test_a_second_run_on_a_held_directory_exits_2_and_touches_nothing_then_resumes_after_a_crash(tmp_path):
    tasks = write_task_dir(tmp_path / "tasks", {f"t{i}": simple_task(size=3, colour=1 + i) for i in range(2)})
    cfg = tiny_config(tasks, **{"ttt.max_steps": 4, "inference.views": 2})
    out = tmp_path / "run"
    holder = start_holder(out)
    try:
        before = tree_state(out)
        r = run_cli(cfg, out, timeout=120)
        assert r.returncode == 2, r.stderr[-2000:]
        errors = error_lines(r.stderr)
        assert len(errors) == 1 and "Traceback" not in r.stderr, r.stderr
        assert str(out) in errors[0] and f"pid {holder.pid}" in errors[0] and socket.gethostname() in errors[0]
        assert "test holder" in errors[0] and "started" in errors[0]
        assert tree_state(out) == before  # no fallback submission, no log, nothing
    finally:
        holder.kill()  # SIGKILL: the holder leaves its lock file behind
        holder.wait()
    assert (out / LOCK_FILE).is_file() and not is_locked(out)
    r = run_cli(cfg, out, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"pid {holder.pid}" in r.stderr and "taking over the lock" in r.stderr
    assert_valid_submission(out, tasks)
    stages = json.loads((out / "state.json").read_text())["stages"]
    assert stages["train"]["status"] == "done" and stages["infer"]["status"] == "done"  # under the run's lock
    assert not (out / LOCK_FILE).exists()


@pytest.mark.e2e
def test_two_concurrent_predicts_into_one_directory(tmp_path):
    import torch

    from arc_kit.model.checkpoint import save_checkpoint
    from arc_kit.model.trm import TRM

    names = ["<blank>", "t0", "t1"]
    cfg = tiny_trm_config(num_puzzle_identifiers=3, halt_max_steps=1)
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "model", TRM(cfg), names)
    tasks = write_task_dir(tmp_path / "tasks", {f"t{i}": simple_task(size=3, colour=1 + i) for i in range(2)})
    out = tmp_path / "preds"
    cmd = [sys.executable, "-m", "arc_kit.cli", "predict", str(tmp_path / "model"), "--tasks", str(tasks)]
    cmd += ["--out", str(out), "--device", "cpu"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    first = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until_held(out, first)
        os.kill(first.pid, signal.SIGSTOP)  # it holds the directory, whatever its speed, while the second starts
        before = tree_state(out)
        second = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert tree_state(out) == before
    finally:
        os.kill(first.pid, signal.SIGCONT)
    stdout, stderr = first.communicate(timeout=120)
    assert second.returncode == 2, second.stderr
    errors = error_lines(second.stderr)
    assert len(errors) == 1 and "Traceback" not in second.stderr, second.stderr
    assert str(out) in errors[0] and f"pid {first.pid}" in errors[0] and "arc-kit predict" in errors[0]
    assert first.returncode == 0, stderr[-2000:]
    lines = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    keys = [(p["task_id"], p["test_index"], p["augmentation"]) for p in lines]
    assert sorted(keys) == [("t0", 0, "t0"), ("t1", 0, "t1")]  # one view each, written once
    assert not (out / LOCK_FILE).exists()
